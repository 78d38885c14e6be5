// Package storeutil holds what several stores under archive/store share and
// the rest of Tidemark has no use for: reader wrappers for streaming puts,
// the empty-read rule, per-put tokens and URLs fit for messages.
package storeutil

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/url"
	"strings"

	"github.com/tidemark/tidemark/archive"
)

// ContextReader fails reads once ctx is done, so a streaming Put stops
// promptly.
type ContextReader struct {
	Ctx context.Context
	R   io.Reader
}

func (c ContextReader) Read(p []byte) (int, error) {
	if err := c.Ctx.Err(); err != nil {
		return 0, err
	}
	return c.R.Read(p)
}

// ReadErrReader remembers the source's own error in Err, so a failed upload
// can say whether the data or the service broke.
type ReadErrReader struct {
	R   io.Reader
	Err error
}

func (e *ReadErrReader) Read(p []byte) (int, error) {
	n, err := e.R.Read(p)
	if err != nil && err != io.EOF {
		e.Err = err
	}
	return n, err
}

// EmptyRead serves the reads object services answer awkwardly: zero bytes,
// or a range starting exactly at the end (refused with 416 by S3, GCS and
// Azure), both empty reads by the contract as long as name exists and off is
// within it.
func EmptyRead(ctx context.Context, s archive.Store, name string, off int64) (io.ReadCloser, error) {
	info, err := s.Stat(ctx, name)
	if err != nil {
		return nil, err
	}
	if off > info.Size {
		return nil, fmt.Errorf("read %s at %d: beyond its end (%d bytes)", name, off, info.Size)
	}
	return io.NopCloser(strings.NewReader("")), nil
}

// RandomToken is a unique tag for one write, e.g. to recognise a retried
// conditional create that finds its own first attempt.
func RandomToken() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

type putTokenKey struct{}

// WithPutToken gives every Put under ctx the token to tag its object with.
// A decorator that repeats a Put itself (archive/store/retry) passes one
// token to all its attempts, so an attempt refused because an earlier one
// landed (only its response was lost) still recognises the object as its
// own.
func WithPutToken(ctx context.Context, token string) context.Context {
	return context.WithValue(ctx, putTokenKey{}, token)
}

// PutToken is the token a Put tags its object with: the one WithPutToken
// set, else a fresh one.
func PutToken(ctx context.Context) string {
	if t, ok := ctx.Value(putTokenKey{}).(string); ok && t != "" {
		return t
	}
	return RandomToken()
}

// SafeURL shows a URL in messages without anything that may hold a secret
// (user info, query, fragment).
func SafeURL(u *url.URL) string {
	v := url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}
	return v.String()
}
