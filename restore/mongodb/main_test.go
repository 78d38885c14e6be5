package mongodb

import (
	"testing"

	"github.com/tidemark/tidemark/internal/testenv"
)

// TestMain stops the servers the package's tests started.
func TestMain(m *testing.M) { testenv.Main(m) }
