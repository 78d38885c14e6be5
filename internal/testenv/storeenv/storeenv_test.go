package storeenv

import (
	"strings"
	"testing"

	"github.com/tidemark/tidemark/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func TestMinIO(t *testing.T) {
	m := MinIOServer(t)
	b := m.NewBucket(t)
	if !strings.HasPrefix(b, "tm-") {
		t.Fatalf("bucket %q", b)
	}
}

func TestAzurite(t *testing.T) {
	a := AzuriteServer(t)
	if c := a.NewContainer(t); !strings.HasPrefix(c, "tm-") {
		t.Fatalf("container %q", c)
	}
}
