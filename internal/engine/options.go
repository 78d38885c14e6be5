package engine

import (
	"fmt"
	"strings"
	"time"

	"github.com/spf13/pflag"
)

// Declarer declares engines' flags on a command's flag set. Two engines
// may declare the same flag (MySQL and MongoDB both take --force); it is
// defined once, its help names both, and each engine reads it.
type Declarer struct {
	fs     *pflag.FlagSet
	engine string // the engine declaring now
	title  string
	owners map[string][]string // flag → engines that declared it
}

// NewDeclarer declares onto fs.
func NewDeclarer(fs *pflag.FlagSet) *Declarer {
	return &Declarer{fs: fs, owners: map[string][]string{}}
}

// For returns d declaring for one engine.
func (d *Declarer) For(info Info) *Declarer {
	e := *d
	e.engine, e.title = info.Name, info.Title
	return &e
}

// Owners names the engines that declared a flag; nil for common flags.
func (d *Declarer) Owners(flag string) []string { return d.owners[flag] }

// String declares a string flag.
func (d *Declarer) String(name, def, usage string) {
	d.declare(name, usage, func() { d.fs.String(name, def, d.title+": "+usage) })
}

// Bool declares a boolean flag.
func (d *Declarer) Bool(name string, def bool, usage string) {
	d.declare(name, usage, func() { d.fs.Bool(name, def, d.title+": "+usage) })
}

// Int declares an integer flag.
func (d *Declarer) Int(name string, def int, usage string) {
	d.declare(name, usage, func() { d.fs.Int(name, def, d.title+": "+usage) })
}

// Uint32 declares an unsigned 32-bit flag.
func (d *Declarer) Uint32(name string, def uint32, usage string) {
	d.declare(name, usage, func() { d.fs.Uint32(name, def, d.title+": "+usage) })
}

// Duration declares a duration flag.
func (d *Declarer) Duration(name string, def time.Duration, usage string) {
	d.declare(name, usage, func() { d.fs.Duration(name, def, d.title+": "+usage) })
}

// Strings declares a repeatable flag (also comma-separated).
func (d *Declarer) Strings(name string, usage string) {
	d.declare(name, usage, func() { d.fs.StringSlice(name, nil, d.title+": "+usage) })
}

// StringArray declares a repeatable flag whose values may hold commas
// (paths).
func (d *Declarer) StringArray(name string, usage string) {
	d.declare(name, usage, func() { d.fs.StringArray(name, nil, d.title+": "+usage) })
}

func (d *Declarer) declare(name, usage string, define func()) {
	d.owners[name] = append(d.owners[name], d.engine)
	f := d.fs.Lookup(name)
	if f == nil {
		define()
		return
	}
	// Declared before by another engine: one flag, its help naming each.
	if strings.HasSuffix(f.Usage, ": "+usage) {
		prefix := strings.TrimSuffix(f.Usage, ": "+usage)
		f.Usage = prefix + ", " + d.title + ": " + usage
		return
	}
	f.Usage += "; " + d.title + ": " + usage
}

// Options are an engine's settings for one job, read by flag name: the
// command's flags on the command line, the config file's settings in the
// agent. Names not declared read as their zero value.
type Options struct{ fs *pflag.FlagSet }

// NewOptions reads from fs.
func NewOptions(fs *pflag.FlagSet) Options { return Options{fs: fs} }

func (o Options) flag(name string) *pflag.Flag {
	if o.fs == nil {
		return nil
	}
	return o.fs.Lookup(name)
}

// String is a string setting.
func (o Options) String(name string) string {
	if f := o.flag(name); f != nil {
		return f.Value.String()
	}
	return ""
}

// Bool is a boolean setting.
func (o Options) Bool(name string) bool {
	v, _ := o.fs.GetBool(name)
	return o.flag(name) != nil && v
}

// Int is an integer setting.
func (o Options) Int(name string) int {
	if o.flag(name) == nil {
		return 0
	}
	v, _ := o.fs.GetInt(name)
	return v
}

// Uint32 is an unsigned 32-bit setting.
func (o Options) Uint32(name string) uint32 {
	if o.flag(name) == nil {
		return 0
	}
	v, _ := o.fs.GetUint32(name)
	return v
}

// Duration is a duration setting.
func (o Options) Duration(name string) time.Duration {
	if o.flag(name) == nil {
		return 0
	}
	v, _ := o.fs.GetDuration(name)
	return v
}

// Strings is a repeatable setting.
func (o Options) Strings(name string) []string {
	f := o.flag(name)
	if f == nil {
		return nil
	}
	if sv, ok := f.Value.(pflag.SliceValue); ok {
		return sv.GetSlice()
	}
	return nil
}

// Changed reports whether a setting was given rather than defaulted.
func (o Options) Changed(name string) bool {
	f := o.flag(name)
	return f != nil && f.Changed
}

// Set gives a setting, as the agent does from its config file.
func (o Options) Set(name, value string) error {
	if o.flag(name) == nil {
		return fmt.Errorf("no setting %q", name)
	}
	return o.fs.Set(name, value)
}
