package agent

import (
	"fmt"
	"strconv"
	"time"

	"github.com/spf13/pflag"

	"github.com/tidemark/tidemark/internal/engine"
)

// setting is one config key that an engine reads as one of its flags.
type setting struct {
	key, flag, value string
}

// settings lists the config's engine settings of a database for one
// command. Which engine takes which is the engines' business: the agent
// only knows the config's names for the flags.
func (d Database) settings(cmd engine.Command) []setting {
	var s []setting
	add := func(key, flag, value string) {
		if value != "" && value != "false" {
			s = append(s, setting{key, flag, value})
		}
	}
	switch {
	case cmd == engine.CmdBackup && d.Backup != nil && d.Backup.PasswordFile != "":
		add("backup.password_file", "password-file", d.Backup.PasswordFile)
	case cmd == engine.CmdStream, cmd == engine.CmdBackup:
		add("password_file", "password-file", d.PasswordFile)
	}
	if st := d.Stream; st != nil {
		switch cmd {
		case engine.CmdStream:
			add("stream.slot", "slot", st.Slot)
			add("stream.create_slot", "create-slot", strconv.FormatBool(st.CreateSlot))
		case engine.CmdBackup:
			add("stream.slot", "slot", st.Slot) // the backup relies on the streamer active on it
		}
	}
	if b := d.Backup; b != nil && cmd == engine.CmdBackup {
		add("backup.fast_checkpoint", "fast-checkpoint", strconv.FormatBool(b.FastCheckpoint))
		add("backup.fallback_full", "fallback-full", strconv.FormatBool(b.FallbackFull))
		add("backup.from_standby", "from-standby", strconv.FormatBool(b.FromStandby))
		if b.MaxLag > 0 {
			add("backup.max_lag", "max-lag", time.Duration(b.MaxLag).String())
		}
	}
	if dr := d.Drill; dr != nil && cmd == engine.CmdDrill {
		add("drill.run_as", "run-as", dr.RunAs)
		add("drill.workdir", "workdir", dr.WorkDir)
		add("drill.target", "target", dr.Target)
	}
	return s
}

// options builds an engine's options for one of the database's jobs, as
// if its settings were flags, and lets the engine check them. Errors name
// the config key.
func (d Database) options(reg *engine.Registry, cmd engine.Command) (engine.Engine, engine.Options, *fieldError) {
	eng, err := reg.ForURL(d.Source)
	if err != nil {
		return nil, engine.Options{}, &fieldError{"source", fmt.Sprintf("a %s URL is required", reg.SchemeList())}
	}
	fs := pflag.NewFlagSet(string(cmd), pflag.ContinueOnError)
	decl := reg.Declare(cmd, fs)
	opts := engine.NewOptions(fs)
	for _, s := range d.settings(cmd) {
		if !owns(decl.Owners(s.flag), eng.Info().Name) {
			msg := fmt.Sprintf("not a %s setting", eng.Info().Title)
			if s.flag == "password-file" {
				msg += fmt.Sprintf(" (its password comes from %s)", eng.Info().Credentials)
			}
			return nil, opts, &fieldError{s.key, msg}
		}
		if err := opts.Set(s.flag, s.value); err != nil {
			return nil, opts, &fieldError{s.key, err.Error()}
		}
	}
	if err := eng.Check(cmd, opts); err != nil {
		return nil, opts, &fieldError{string(cmd), err.Error()}
	}
	return eng, opts, nil
}

func owns(owners []string, name string) bool {
	for _, o := range owners {
		if o == name {
			return true
		}
	}
	return false
}
