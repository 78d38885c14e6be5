package engine

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"sort"
	"strings"

	"github.com/spf13/pflag"

	"github.com/tidemark/tidemark/archive"
)

var (
	// ErrUnknownEngine: a URL scheme or a recorded source no engine answers to.
	ErrUnknownEngine = errors.New("no engine for this database")
	// ErrUsage: options that cannot work, refused before anything is done
	// (exit 2, like a bad flag).
	ErrUsage = errors.New("usage")
)

// Registry holds the engines, in the order they were registered. Build it
// once (internal/engine/all) and pass it down; there is no global one.
type Registry struct {
	engines []Engine
	byName  map[string]Engine
	scheme  map[string]Engine
}

// NewRegistry registers engines; names and schemes must be unique.
func NewRegistry(engines ...Engine) (*Registry, error) {
	r := &Registry{byName: map[string]Engine{}, scheme: map[string]Engine{}}
	for _, e := range engines {
		info := e.Info()
		if r.byName[info.Name] != nil {
			return nil, fmt.Errorf("engine %q registered twice", info.Name)
		}
		r.byName[info.Name] = e
		for _, s := range info.Schemes {
			if r.scheme[s] != nil {
				return nil, fmt.Errorf("URL scheme %q claimed by %s and %s", s, r.scheme[s].Info().Name, info.Name)
			}
			r.scheme[s] = e
		}
		r.engines = append(r.engines, e)
	}
	return r, nil
}

// Engines lists the engines in registration order.
func (r *Registry) Engines() []Engine { return r.engines }

// Named returns the engine recorded under name.
func (r *Registry) Named(name string) (Engine, error) {
	if e := r.byName[name]; e != nil {
		return e, nil
	}
	return nil, fmt.Errorf("%w: %q (this tidemark knows %s)", ErrUnknownEngine, name, strings.Join(r.names(), ", "))
}

// ForURL returns the engine of a source or target URL.
func (r *Registry) ForURL(raw string) (Engine, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, err
	}
	if e := r.scheme[u.Scheme]; e != nil {
		return e, nil
	}
	return nil, fmt.Errorf("%w: unsupported scheme %q (%s)", ErrUnknownEngine, u.Scheme, r.SchemeList())
}

// ForRepo returns the engine of the source a repository is bound to; a
// repository that no stream or backup has written yet has none.
func (r *Registry) ForRepo(ctx context.Context, repo *archive.Repository) (Engine, error) {
	src, err := repo.Source(ctx)
	if errors.Is(err, archive.ErrNotExist) {
		return nil, fmt.Errorf("%w: the repository holds no stream and no backup yet", archive.ErrUnreachable)
	}
	if err != nil {
		return nil, err
	}
	return r.Named(src.Engine)
}

// SchemeList is "postgres://, postgresql://, mysql://, …" for messages.
func (r *Registry) SchemeList() string {
	var s []string
	for _, e := range r.engines {
		for _, sc := range e.Info().Schemes {
			s = append(s, sc+"://")
		}
	}
	return strings.Join(s, ", ")
}

func (r *Registry) names() []string {
	var n []string
	for _, e := range r.engines {
		n = append(n, e.Info().Name)
	}
	return n
}

// Declare lets every engine declare its flags of cmd on fs.
func (r *Registry) Declare(cmd Command, fs *pflag.FlagSet) *Declarer {
	d := NewDeclarer(fs)
	for _, e := range r.engines {
		e.Flags(cmd, d.For(e.Info()))
	}
	return d
}

// Help gathers the engines' paragraphs of cmd's help.
func (r *Registry) Help(cmd Command) string {
	var parts []string
	for _, e := range r.engines {
		if h := e.Help(cmd); h != "" {
			parts = append(parts, h)
		}
	}
	return strings.Join(parts, "\n\n")
}

// Foreign refuses the given flags that belong to other engines than e,
// so a --to-lsn on a MySQL restore is refused instead of ignored.
func Foreign(e Engine, d *Declarer, given []string) error {
	var bad []string
	for _, name := range given {
		owners := d.Owners(name)
		if len(owners) > 0 && !slices.Contains(owners, e.Info().Name) {
			bad = append(bad, "--"+name)
		}
	}
	if len(bad) == 0 {
		return nil
	}
	sort.Strings(bad)
	return fmt.Errorf("%s: not %s options", strings.Join(bad, ", "), e.Info().Title)
}
