package agent

import (
	"context"
	_ "embed"
	"html/template"
	"net/http"
	"sync"
	"time"

	"github.com/tidemark/tidemark/internal/jobs"
)

//go:embed page.tmpl
var pageHTML string

var pageTemplate = template.Must(template.New("page").Parse(pageHTML))

// statusTTL is how long the page reuses a repository's status: reading it
// lists the repository, which on an object store costs requests.
const statusTTL = 30 * time.Second

// Board is what the agent's page at / shows of each database: the
// repository's status (the data `status --json` shows) and the RPO the
// agent measures.
type Board struct {
	// Status reads a database's repository status.
	Status func(ctx context.Context, db Database) (*jobs.StatusReport, error)
	Now    func() time.Time

	mu    sync.Mutex
	order []string
	dbs   map[string]*boardEntry
}

type boardEntry struct {
	db       Database
	rpo      time.Duration
	rpoKnown bool
	streamUp bool
	status   *jobs.StatusReport
	err      error
	read     time.Time // when status was read
}

// NewBoard is a board reading statuses with status.
func NewBoard(status func(context.Context, Database) (*jobs.StatusReport, error)) *Board {
	return &Board{Status: status, Now: time.Now, dbs: map[string]*boardEntry{}}
}

// configure shows cfg's databases, keeping what is known of those that
// stay.
func (b *Board) configure(cfg *Config) {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	next := map[string]*boardEntry{}
	b.order = b.order[:0]
	for _, db := range cfg.Databases {
		e := b.dbs[db.Name]
		if e == nil {
			e = &boardEntry{}
		}
		e.db = db
		next[db.Name] = e
		b.order = append(b.order, db.Name)
	}
	b.dbs = next
}

// setRPO records the RPO the agent measured for a database.
func (b *Board) setRPO(name string, rpo time.Duration, up bool) {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if e := b.dbs[name]; e != nil {
		e.rpo, e.rpoKnown, e.streamUp = rpo, true, up
	}
}

// invalidate makes the next page read the database's status afresh (a job
// changed the repository).
func (b *Board) invalidate(name string) {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if e := b.dbs[name]; e != nil {
		e.read = time.Time{}
	}
}

// snapshot returns the entries in config order, reading statuses older
// than statusTTL (outside the lock: a slow store must not block setRPO).
func (b *Board) snapshot(ctx context.Context) []boardEntry {
	now := b.Now()
	b.mu.Lock()
	var stale []Database
	for _, name := range b.order {
		if e := b.dbs[name]; now.Sub(e.read) > statusTTL {
			stale = append(stale, e.db)
		}
	}
	b.mu.Unlock()
	type read struct {
		st  *jobs.StatusReport
		err error
	}
	fresh := map[string]read{}
	for _, db := range stale {
		st, err := b.Status(ctx, db)
		fresh[db.Name] = read{st, err}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]boardEntry, 0, len(b.order))
	for _, name := range b.order {
		e := b.dbs[name]
		if r, ok := fresh[name]; ok {
			e.status, e.err, e.read = r.st, r.err, now
		}
		out = append(out, *e)
	}
	return out
}

// ServeHTTP serves the page: HTML with inline SVG, nothing loaded from
// elsewhere.
func (b *Board) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/" {
		http.NotFound(w, r)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	now := b.Now()
	p := pageView{Now: now.UTC().Format("2006-01-02 15:04:05Z")}
	for _, e := range b.snapshot(ctx) {
		p.DBs = append(p.DBs, viewOf(e, now))
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; img-src data:")
	if err := pageTemplate.Execute(w, p); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
	}
}
