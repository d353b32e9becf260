package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"strings"
)

// errHelp means --help was asked for and printed: exit 0.
var errHelp = errors.New("help requested")

const mainUsage = `orchestrator — Orchestrator Edge, the AI SRE control plane appliance

Usage:
  orchestrator serve [--dev] [--addr ADDR] [--data-dir DIR]   run the server
  orchestrator migrate [up|status|down] [--data-dir DIR]     apply, list or undo the newest migration
  orchestrator backup --out FILE [--data-dir DIR]            write a verified snapshot (server may run)
  orchestrator restore --from FILE [--data-dir DIR]          install a snapshot (server stopped)
  orchestrator migrate-to-postgres --to URL|--to-env VAR [--data-dir DIR] copy the SQLite database into an empty PostgreSQL (server stopped)
  orchestrator version                                       print the version
  orchestrator send-sample SOURCE [--url URL] [--dev] [--secret SECRET]
                                                             sign and send a built-in source's sample webhook

Configuration comes from the environment (see docs/configuration.md); flags override it.
Run "orchestrator COMMAND --help" for a command's flags.
`

// run executes one command line. getenv is os.Getenv in production; tests
// pass their own environment.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, mainUsage)
		return &usageError{msg: "no command given"}
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "serve":
		return serve(ctx, rest, getenv, stdout, stderr)
	case "migrate":
		return migrate(ctx, rest, getenv, stdout, stderr)
	case "backup":
		return backup(ctx, rest, getenv, stdout, stderr)
	case "migrate-to-postgres":
		return migrateToPostgres(ctx, rest, getenv, stdout, stderr)
	case "restore":
		return restore(ctx, rest, getenv, stdout, stderr)
	case "version":
		return printVersion(rest, stdout, stderr)
	case "send-sample":
		return sendSample(ctx, rest, getenv, stdout, stderr)
	case "-h", "--help", "help":
		fmt.Fprint(stdout, mainUsage)
		return nil
	}
	fmt.Fprint(stderr, mainUsage)
	return &usageError{msg: fmt.Sprintf("unknown command %q", cmd)}
}

// newFlagSet returns a flag set that prints its usage to stdout on --help and
// reports mistakes as usage errors.
func newFlagSet(name, synopsis string, stdout io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {
		fmt.Fprintf(stdout, "Usage: orchestrator %s\n\n", synopsis)
		fs.SetOutput(stdout)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
	}
	return fs
}

// parseFlags parses args, turning --help into errHelp and mistakes into a
// usage error.
func parseFlags(fs *flag.FlagSet, args []string) error {
	err := fs.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		// The flag package has printed the usage already (fs.Usage).
		return errHelp
	case err != nil:
		return &usageError{msg: fmt.Sprintf("%s: %v (see --help)", fs.Name(), err)}
	}
	return nil
}

// overlay returns a getenv in which the set flags win over the environment,
// so that one validation (config.Load) covers both.
func overlay(getenv func(string) string, flags map[string]string) func(string) string {
	return func(name string) string {
		if v, ok := flags[name]; ok {
			return v
		}
		return getenv(name)
	}
}

func printVersion(args []string, stdout, _ io.Writer) error {
	fs := newFlagSet("version", "version", stdout)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "orchestrator %s (%s, %s/%s%s)\n", version, runtime.Version(), runtime.GOOS, runtime.GOARCH, vcsSuffix())
	return nil
}

// vcsSuffix names the commit the binary was built from, when Go recorded it.
func vcsSuffix() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	var rev, dirty string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "-dirty"
			}
		}
	}
	if rev == "" {
		return ""
	}
	return ", commit " + strings.TrimSpace(rev[:min(12, len(rev))]) + dirty
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
