// Package all is the one place engines are registered: a new engine is
// one line here.
package all

import (
	"github.com/tidemark/tidemark/internal/engine"
	"github.com/tidemark/tidemark/internal/engine/mongodb"
	"github.com/tidemark/tidemark/internal/engine/mysql"
	"github.com/tidemark/tidemark/internal/engine/postgres"
)

// Registry returns every engine this build knows.
func Registry() *engine.Registry {
	r, err := engine.NewRegistry(
		postgres.New(),
		mysql.New(),
		mongodb.New(),
	)
	if err != nil {
		panic(err) // names and schemes are fixed at build time; a clash is a programming error
	}
	return r
}
