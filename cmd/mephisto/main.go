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
	"crypto/tls"
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
	envListen      = "MEPHISTO_LISTEN"
	envDataDir     = "MEPHISTO_DATA_DIR"
	envTLSCert     = "MEPHISTO_TLS_CERT"
	envTLSKey      = "MEPHISTO_TLS_KEY"
	envTLSClientCA = "MEPHISTO_TLS_CLIENT_CA"
	envSASL        = "MEPHISTO_SASL" // comma-separated MECHANISM:USER:PASSWORD entries
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
	// TLS: the broker's certificate and key, and the CAs of the client
	// certificates it requires (mutual TLS), PEM files.
	tlsCert, tlsKey, tlsClientCA string
	// sasl are the SASL users, MECHANISM:USER:PASSWORD each.
	sasl []string
}

// tlsConfig loads the broker's TLS configuration; nil without --tls-cert.
func (o brokerOptions) tlsConfig() (*tls.Config, error) {
	if o.tlsCert == "" && o.tlsKey == "" {
		if o.tlsClientCA != "" {
			return nil, &usageError{errors.New("--tls-client-ca needs --tls-cert and --tls-key (clients are asked for certificates in a TLS handshake)")}
		}
		return nil, nil
	}
	if o.tlsCert == "" || o.tlsKey == "" {
		return nil, &usageError{errors.New("--tls-cert and --tls-key go together: give both")}
	}
	cert, err := tls.LoadX509KeyPair(o.tlsCert, o.tlsKey)
	if err != nil {
		return nil, fmt.Errorf("--tls-cert %s / --tls-key %s: %w", o.tlsCert, o.tlsKey, err)
	}
	c := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if o.tlsClientCA != "" {
		pool, err := kafka.LoadCAs(o.tlsClientCA)
		if err != nil {
			return nil, fmt.Errorf("--tls-client-ca: %w", err)
		}
		c.ClientCAs, c.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return c, nil
}

// saslUsers parses --sasl.
func (o brokerOptions) saslUsers() ([]kafka.SASLUser, error) {
	var users []kafka.SASLUser
	for _, e := range o.sasl {
		u, err := kafka.ParseSASLUser(e)
		if err != nil {
			// Not the entry itself: it holds a password.
			return nil, &usageError{fmt.Errorf("--sasl entry %d: %w", len(users)+1, err)}
		}
		users = append(users, u)
	}
	return users, nil
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
			"With --tls-cert and --tls-key its listener speaks TLS only (--tls-client-ca\n" +
			"also requires client certificates); with --sasl MECHANISM:USER:PASSWORD\n" +
			"(repeatable) clients must authenticate as one of those users, so that\n" +
			"workers' --kafka-tls and --kafka-sasl-* settings can be tried locally.\n\n" +
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
			for _, e := range []struct {
				flag, env string
				v         *string
			}{{"tls-cert", envTLSCert, &opts.tlsCert}, {"tls-key", envTLSKey, &opts.tlsKey}, {"tls-client-ca", envTLSClientCA, &opts.tlsClientCA}} {
				if v := getenv(e.env); v != "" && !flags.Changed(e.flag) {
					*e.v = v
				}
			}
			if v := getenv(envSASL); v != "" && !flags.Changed("sasl") {
				opts.sasl = strings.Split(v, ",")
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
	f.StringVar(&opts.tlsCert, "tls-cert", "", "PEM file of the broker's certificate: the listener speaks TLS only (with --tls-key; env "+envTLSCert+")")
	f.StringVar(&opts.tlsKey, "tls-key", "", "PEM file of the key of --tls-cert (env "+envTLSKey+")")
	f.StringVar(&opts.tlsClientCA, "tls-client-ca", "", "PEM file of the CAs whose client certificates the broker requires: mutual TLS (env "+envTLSClientCA+")")
	f.StringArrayVar(&opts.sasl, "sasl", nil, "a SASL user, MECHANISM:USER:PASSWORD with MECHANISM PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (repeatable; any turns SASL on; env "+envSASL+", entries comma-separated)")
	return cmd
}

// runBroker runs the broker until ctx is done or SIGINT/SIGTERM arrives,
// then closes it, persisting its state.
func runBroker(ctx context.Context, opts brokerOptions, logger *slog.Logger, stdout io.Writer) error {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()

	tlsCfg, err := opts.tlsConfig()
	if err != nil {
		return err
	}
	users, err := opts.saslUsers()
	if err != nil {
		return err
	}
	b, err := kafka.StartBroker(kafka.BrokerConfig{
		Listen:     opts.listen,
		DataDir:    opts.dataDir,
		Logger:     logger,
		SyncWrites: opts.syncWrites,
		TLS:        tlsCfg,
		SASL:       users,
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
