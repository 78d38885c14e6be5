// Command tidemark is continuous, native backup and point-in-time recovery
// for PostgreSQL, MySQL/MariaDB and MongoDB.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"os/signal"
	"runtime/pprof"
	"runtime/trace"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/tidemark/tidemark/internal/engine"
	"github.com/tidemark/tidemark/internal/engine/all"
	"github.com/tidemark/tidemark/internal/progress"
)

// app carries what every command shares; nothing global.
type app struct {
	stdout, stderr io.Writer
	logLevel       string
	logFormat      string
	log            *slog.Logger
	engines        *engine.Registry
	// fromEnv names the flags bindEnv set from TIDEMARK_* variables: they
	// apply where they fit and are not refused where they do not.
	fromEnv map[string]bool
}

func newApp(stdout, stderr io.Writer) *app {
	return &app{stdout: stdout, stderr: stderr, engines: all.Registry(), fromEnv: map[string]bool{}}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	a := newApp(os.Stdout, os.Stderr)
	stopProfile := startProfile()
	err := a.root().ExecuteContext(ctx)
	stopProfile()
	printError(os.Stderr, err)
	os.Exit(exitCode(err))
}

// printError reports err, except a quiet miss of wal-fetch.
func printError(w io.Writer, err error) {
	if err != nil && !errors.Is(err, errQuietMissing) {
		fmt.Fprintf(w, "tidemark: %v\n", err)
	}
}

// startProfile writes a CPU profile to $TIDEMARK_CPUPROFILE and an
// execution trace (where goroutines wait) to $TIDEMARK_TRACE when they are
// set: for tuning with `go tool pprof` and `go tool trace`, never needed in
// operation.
func startProfile() func() {
	stopCPU := startRecording("TIDEMARK_CPUPROFILE", pprof.StartCPUProfile, pprof.StopCPUProfile)
	stopTrace := startRecording("TIDEMARK_TRACE", trace.Start, trace.Stop)
	return func() { stopTrace(); stopCPU() }
}

func startRecording(env string, start func(io.Writer) error, stop func()) func() {
	path := os.Getenv(env)
	if path == "" {
		return func() {}
	}
	f, err := os.Create(path)
	if err != nil {
		fmt.Fprintf(os.Stderr, "tidemark: %s: %v\n", env, err)
		return func() {}
	}
	if err := start(f); err != nil {
		fmt.Fprintf(os.Stderr, "tidemark: %s: %v\n", env, err)
		f.Close()
		return func() {}
	}
	return func() { stop(); f.Close() }
}

func (a *app) root() *cobra.Command {
	root := &cobra.Command{
		Use:   "tidemark",
		Short: "Continuous, native database backup and point-in-time recovery",
		Long: `Tidemark streams a database's changes over its own replication protocol
(PostgreSQL WAL, MySQL/MariaDB binlog, MongoDB oplog), takes base backups,
and keeps both in a deduplicated, compressed, encrypted repository from which
any moment can be restored.

Every flag can also be set from the environment: --repo is TIDEMARK_REPO,
--identity-file is TIDEMARK_IDENTITY_FILE, and so on (upper case, dashes
become underscores). Secrets are only ever read from files or the
environment, never from arguments.

Repositories (--repo) and their credentials, always from the environment
or files, never from the URL:
  /path, file:///path            local disk
  s3://bucket/prefix             S3 or S3-compatible: the AWS chain
                                 (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY,
                                 AWS_PROFILE, instance roles), AWS_REGION,
                                 AWS_ENDPOINT_URL for MinIO and the like
  gs://bucket/prefix             Google Cloud Storage: application default
                                 credentials, GOOGLE_APPLICATION_CREDENTIALS=
                                 service-account key file;
                                 STORAGE_EMULATOR_HOST for an emulator
  azblob://container/prefix      Azure Blob Storage, account from
                                 AZURE_STORAGE_ACCOUNT, or
  https://ACCOUNT.blob.core.windows.net/container/prefix
                                 first set: AZURE_STORAGE_CONNECTION_STRING,
                                 AZURE_STORAGE_KEY or AZURE_STORAGE_KEY_FILE,
                                 AZURE_STORAGE_SAS_TOKEN or _SAS_TOKEN_FILE,
                                 else DefaultAzureCredential (service principal
                                 env, managed identity, az login);
                                 AZURE_STORAGE_ENDPOINT for Azurite

Exit codes: 0 ok, 1 error, 2 bad usage, 3 corruption found, 4 missing or
wrong key, 5 not found, 6 gap in the archive, 7 target unreachable,
8 not implemented yet, 9 repository locked by another process
(or the lock was lost), 10 the restore target already holds data;
wal-fetch exits 1 for a file that is not archived
and 126 when it cannot serve one (so PostgreSQL aborts recovery instead of
ending it early).`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			if err := bindEnv(cmd, a.fromEnv); err != nil {
				return usageErr(err)
			}
			return a.setupLogging()
		},
	}
	root.PersistentFlags().StringVar(&a.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	root.PersistentFlags().StringVar(&a.logFormat, "log-format", "text", "log format: text or json (logs go to stderr)")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageErr(err) })
	root.AddCommand(a.initCmd(), a.statusCmd(), a.verifyCmd(), a.streamCmd(), a.backupCmd(),
		a.restoreCmd(), a.expireCmd(), a.drillCmd(), a.agentCmd(), a.walFetchCmd())
	return root
}

func (a *app) setupLogging() error {
	var level slog.Level
	if err := level.UnmarshalText([]byte(a.logLevel)); err != nil {
		return usageErr(fmt.Errorf("--log-level %q: %w", a.logLevel, err))
	}
	opts := &slog.HandlerOptions{Level: level}
	switch a.logFormat {
	case "text":
		a.log = slog.New(slog.NewTextHandler(a.stderr, opts))
	case "json":
		a.log = slog.New(slog.NewJSONHandler(a.stderr, opts))
	default:
		return usageErr(fmt.Errorf("--log-format %q: want text or json", a.logFormat))
	}
	return nil
}

// bindEnv fills every flag the user did not set from TIDEMARK_<FLAG>.
// Repeated flags take a comma-separated list.
func bindEnv(cmd *cobra.Command, set map[string]bool) error {
	var firstErr error
	visit := func(f *pflag.Flag) {
		if f.Changed || firstErr != nil {
			return
		}
		env := "TIDEMARK_" + envName(f.Name)
		v, ok := os.LookupEnv(env)
		if !ok || v == "" {
			return
		}
		vals := []string{v}
		if strings.HasSuffix(f.Value.Type(), "Slice") || strings.HasSuffix(f.Value.Type(), "Array") {
			vals = strings.Split(v, ",")
		}
		for _, x := range vals {
			if err := f.Value.Set(strings.TrimSpace(x)); err != nil {
				firstErr = fmt.Errorf("%s=%q: %w", env, v, err)
				return
			}
		}
		f.Changed = true
		set[f.Name] = true
	}
	cmd.Flags().VisitAll(visit)
	cmd.InheritedFlags().VisitAll(visit)
	return firstErr
}

func envName(flag string) string { return strings.ToUpper(strings.ReplaceAll(flag, "-", "_")) }

// Error classes with stable exit codes, so scripts and the agent can tell a
// corrupt archive from a typo.
var (
	errUsage          = errors.New("usage")
	errNotImplemented = errors.New("not implemented yet")
	// errQuietMissing: wal-fetch of a file that is not archived (exit 1,
	// nothing printed: PostgreSQL asks for such files routinely).
	errQuietMissing = errors.New("not archived")
	// errFetchFailed: wal-fetch could not serve a file that may exist.
	errFetchFailed = errors.New("cannot fetch (recovery must stop here, not end early)")
)

func usageErr(err error) error { return fmt.Errorf("%w (see --help): %w", err, errUsage) }

// engineOf finds the engine of a source or target URL and refuses
// passwords in it: a password in a URL on the command line is visible to
// every user of the host through the process list.
func (a *app) engineOf(flag, raw string) (engine.Engine, error) {
	if raw == "" {
		return nil, usageErr(fmt.Errorf("--%s is required", flag))
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, usageErr(fmt.Errorf("--%s: %w", flag, err))
	}
	// From the environment a password is not visible to other users.
	if _, set := u.User.Password(); set && os.Getenv("TIDEMARK_"+envName(flag)) != raw {
		return nil, usageErr(fmt.Errorf("--%s: passwords do not belong in URLs on the command line; use ~/.pgpass or PGPASSFILE (PostgreSQL), a password file, or set TIDEMARK_%s in the environment", flag, envName(flag)))
	}
	e, err := a.engines.ForURL(raw)
	if err != nil {
		return nil, usageErr(fmt.Errorf("--%s %q: %w", flag, u.Redacted(), err))
	}
	return e, nil
}

// engineOptions checks the engine's flags of a command: flags of other
// engines given on the command line are refused, and the engine checks
// its own.
func (a *app) engineOptions(e engine.Engine, cmd engine.Command, d *engine.Declarer, fs *pflag.FlagSet) (engine.Options, error) {
	var given []string
	fs.Visit(func(f *pflag.Flag) {
		if !a.fromEnv[f.Name] {
			given = append(given, f.Name)
		}
	})
	if err := engine.Foreign(e, d, given); err != nil {
		return engine.Options{}, usageErr(err)
	}
	o := engine.NewOptions(fs)
	if err := e.Check(cmd, o); err != nil {
		return o, usageErr(err)
	}
	return o, nil
}

// newProgress draws progress on a terminal, or logs it every
// progress.LogEvery when stderr is not one.
func (a *app) newProgress() *progress.Line {
	return progress.NewWith(a.stderr, progress.Options{Log: a.log})
}

// progressOf passes a job's progress to bar.
func (a *app) progressOf(bar *progress.Line) func(engine.Step) {
	return func(s engine.Step) {
		bar.Update(progress.Update{Phase: s.Phase, Unit: s.Unit, Done: s.Done, Total: s.Total, Bytes: s.Bytes})
	}
}
