// Command mephisto is Mephisto's standalone tool. Its broker subcommand runs
// the embedded Kafka-protocol development broker (the one a worker starts
// in-process when given no --brokers) as its own process, for multi-process
// development clusters and tests.
//
// Exit codes: 0 success, 1 the command failed, 2 bad flags, arguments or
// subcommand (usage is printed to stderr).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/mephistohq/mephisto/kafka"
	"github.com/spf13/cobra"
)

// Exit codes.
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
)

// Environment variables read by the broker subcommand when the matching
// flag is not given.
const (
	envListen  = "MEPHISTO_LISTEN"
	envDataDir = "MEPHISTO_DATA_DIR"
)

const defaultBrokerListen = "127.0.0.1:9092"

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

// run executes the command line and returns the process exit code.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	root := newRootCmd(getenv, stdout, stderr)
	root.SetArgs(args)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return exitOK
	}
	if cmd == nil {
		cmd = root
	}
	fmt.Fprintf(stderr, "Error: %v\n", err)
	if isUsageError(err) {
		fmt.Fprintf(stderr, "\n%s", cmd.UsageString())
		return exitUsage
	}
	return exitError
}

// usageError marks an error caused by how the command was invoked.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func isUsageError(err error) bool {
	var ue *usageError
	// Cobra reports unknown subcommands and unexpected positional
	// arguments (cobra.NoArgs) as plain "unknown command" errors.
	return errors.As(err, &ue) || strings.HasPrefix(err.Error(), "unknown command ")
}

func newRootCmd(getenv func(string) string, stdout, stderr io.Writer) *cobra.Command {
	logLevel := &logLevelFlag{level: slog.LevelInfo}
	root := &cobra.Command{
		Use:   "mephisto",
		Short: "Mephisto: Faust-style stream processing in Go",
		Long: "Mephisto is a Faust-style stream processor in Go.\n\n" +
			"This tool runs Mephisto's embedded Kafka-protocol development broker\n" +
			"on its own (mephisto broker). Production deployments should use a real\n" +
			"Kafka or Redpanda cluster instead.",
		Version: moduleVersion(),
		// No Args and no Run: bare "mephisto" prints help, and cobra
		// rejects an unknown subcommand with an "unknown command" error
		// (a root with Args set would print help for it instead).
		SilenceErrors: true, // run prints errors, and usage only for usage errors
		SilenceUsage:  true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		return &usageError{err}
	})
	root.PersistentFlags().Var(logLevel, "log-level", "log level: debug, info, warn or error")
	root.AddCommand(
		newBrokerCmd(getenv, logLevel, stdout, stderr),
		newVersionCmd(stdout),
	)
	return root
}

type brokerOptions struct {
	listen     string
	dataDir    string
	syncWrites bool
}

func newBrokerCmd(getenv func(string) string, logLevel *logLevelFlag, stdout, stderr io.Writer) *cobra.Command {
	var opts brokerOptions
	cmd := &cobra.Command{
		Use:   "broker",
		Short: "Run the embedded Kafka-protocol development broker",
		Long: "Run Mephisto's embedded Kafka-protocol development broker (kfake) until\n" +
			"SIGINT or SIGTERM, then persist its state (with --data-dir) and exit.\n\n" +
			"It is for development clusters and tests only: in production point\n" +
			"--brokers at a real Kafka or Redpanda cluster.\n\n" +
			"Once listening it prints: broker listening on ADDR cluster-id ID",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			flags := cmd.Flags()
			if !flags.Changed("listen") {
				if v := getenv(envListen); v != "" {
					opts.listen = v
				}
			}
			if !flags.Changed("data-dir") {
				if v := getenv(envDataDir); v != "" {
					opts.dataDir = v
				}
			}
			if _, _, err := net.SplitHostPort(opts.listen); err != nil {
				return &usageError{fmt.Errorf("invalid --listen %q: %w", opts.listen, err)}
			}
			logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: logLevel.level}))
			return runBroker(cmd.Context(), opts, logger, stdout)
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.listen, "listen", defaultBrokerListen, "host:port to listen on (env "+envListen+")")
	f.StringVar(&opts.dataDir, "data-dir", "", "directory to persist topics, records, offsets and groups in; empty keeps everything in memory (env "+envDataDir+")")
	f.BoolVar(&opts.syncWrites, "sync-writes", false, "fsync every produce (slower, survives power loss)")
	return cmd
}

// runBroker runs the broker until ctx is done or SIGINT/SIGTERM arrives,
// then closes it, persisting its state.
func runBroker(ctx context.Context, opts brokerOptions, logger *slog.Logger, stdout io.Writer) error {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()

	b, err := kafka.StartBroker(kafka.BrokerConfig{
		Listen:     opts.listen,
		DataDir:    opts.dataDir,
		Logger:     logger,
		SyncWrites: opts.syncWrites,
	})
	if err != nil {
		return fmt.Errorf("starting broker: %w", err)
	}
	if _, err := fmt.Fprintf(stdout, "broker listening on %s cluster-id %s\n", b.Addr(), b.ClusterID()); err != nil {
		_ = b.Close()
		return fmt.Errorf("writing to stdout: %w", err)
	}

	<-ctx.Done()
	stop() // from now on a second signal kills the process outright
	logger.Info("shutting down broker (signal again to force)", "reason", context.Cause(ctx))
	if err := b.Close(); err != nil {
		return fmt.Errorf("closing broker: %w", err)
	}
	return nil
}

func newVersionCmd(stdout io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the mephisto module version",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			if _, err := fmt.Fprintf(stdout, "mephisto %s\n", moduleVersion()); err != nil {
				return fmt.Errorf("writing to stdout: %w", err)
			}
			return nil
		},
	}
}

// moduleVersion returns the main module's version from the build info:
// a tag or pseudo-version when built with VCS stamping or installed with go
// install, "(devel)" otherwise.
func moduleVersion() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok || bi.Main.Version == "" {
		return "(unknown)"
	}
	return bi.Main.Version
}

// logLevelFlag is a pflag.Value accepting debug, info, warn or error.
type logLevelFlag struct{ level slog.Level }

// String returns the level's name in lower case.
func (f *logLevelFlag) String() string { return strings.ToLower(f.level.String()) }

// Set parses one of debug, info, warn or error.
func (f *logLevelFlag) Set(s string) error {
	switch strings.ToLower(s) {
	case "debug":
		f.level = slog.LevelDebug
	case "info":
		f.level = slog.LevelInfo
	case "warn":
		f.level = slog.LevelWarn
	case "error":
		f.level = slog.LevelError
	default:
		return fmt.Errorf("unknown log level %q: want debug, info, warn or error", s)
	}
	return nil
}

// Type names the flag's value in usage.
func (f *logLevelFlag) Type() string { return "level" }
