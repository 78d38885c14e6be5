// Package storeenv adds to testenv's object-store servers what needs a cloud
// SDK: making S3 buckets on MinIO and containers on Azurite. It is a package
// of its own so that testenv, which every engine's tests import, links no
// cloud SDK. fake-gcs-server makes buckets over plain HTTP and needs nothing
// from here (testenv.FakeGCSServer).
package storeenv

import (
	"context"
	"fmt"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/tidemark/tidemark/internal/testenv"
)

// MinIO is testenv's MinIO server with an S3 client to make buckets.
type MinIO struct{ *testenv.MinIO }

// MinIOServer returns the process's shared MinIO server, starting it on
// first use (see testenv.MinIOServer).
func MinIOServer(t testing.TB) *MinIO {
	t.Helper()
	return &MinIO{testenv.MinIOServer(t)}
}

// StartMinIO starts a server of its own; Stop stops it and removes its files.
func StartMinIO() (*MinIO, error) {
	m, err := testenv.StartMinIO()
	if err != nil {
		return nil, err
	}
	return &MinIO{m}, nil
}

// Client is an S3 client for the server.
func (m *MinIO) Client() *s3.Client {
	return s3.New(s3.Options{
		Region:       m.Region,
		BaseEndpoint: aws.String(m.Endpoint),
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(m.AccessKey, m.SecretKey, ""),
	})
}

// CreateBucket makes a fresh, uniquely named bucket.
func (m *MinIO) CreateBucket(ctx context.Context) (string, error) {
	name := testenv.NewName()
	if _, err := m.Client().CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(name)}); err != nil {
		return "", fmt.Errorf("create bucket %s: %w", name, err)
	}
	return name, nil
}

// NewBucket makes a fresh bucket for a test.
func (m *MinIO) NewBucket(t testing.TB) string {
	t.Helper()
	return testenv.Create(t, m.CreateBucket)
}

// Azurite is testenv's Azurite server with a client to make containers.
type Azurite struct{ *testenv.Azurite }

// AzuriteServer returns the process's shared Azurite server, starting it on
// first use (see testenv.AzuriteServer).
func AzuriteServer(t testing.TB) *Azurite {
	t.Helper()
	return &Azurite{testenv.AzuriteServer(t)}
}

// CreateContainer makes a fresh, uniquely named container.
func (a *Azurite) CreateContainer(ctx context.Context) (string, error) {
	name := testenv.NewName()
	c, err := container.NewClientFromConnectionString(a.ConnectionString(), name, nil)
	if err != nil {
		return "", fmt.Errorf("create container %s: %w", name, err)
	}
	if _, err := c.Create(ctx, nil); err != nil {
		return "", fmt.Errorf("create container %s: %w", name, err)
	}
	return name, nil
}

// NewContainer makes a fresh container for a test.
func (a *Azurite) NewContainer(t testing.TB) string {
	t.Helper()
	return testenv.Create(t, a.CreateContainer)
}
