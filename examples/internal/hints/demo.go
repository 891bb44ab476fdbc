package hints

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/mephistohq/mephisto"
)

// Demo is what a counting example shows a newcomer: a guide printed once
// the worker is ready (where to read the counts, how to send a record,
// how to turn the generator on), and a generator that sends random
// records and logs a few counts read back over HTTP.
type Demo struct {
	// Name is the example's name, as in ./examples/NAME.
	Name string
	// Table is the table the counts are read from; Keys are the keys whose
	// counts the generator logs, and Keys[0] is the guide's example.
	Table string
	Keys  []string
	// SendArgs are the arguments of the guide's send command, up to
	// --brokers: `send lines "hello world"`.
	SendArgs string
	// RateEnv names the environment variable with the generator's rate;
	// Unit names what it sends, plural ("lines").
	RateEnv, Unit string
}

// Guide prints to w, once app is ready, where to look and what to try.
func (d Demo) Guide(ctx context.Context, app *mephisto.App, w io.Writer) error {
	WaitReady(ctx, app, 30*time.Second)
	if ctx.Err() != nil {
		return nil
	}
	// The send hint names the brokers this worker uses, so that it is
	// right whatever the flags.
	cfg := app.Config()
	brokers := cfg.EmbeddedBroker
	if len(cfg.Brokers) > 0 {
		brokers = strings.Join(cfg.Brokers, ",")
	} else if strings.HasSuffix(brokers, ":0") {
		brokers = "<the embedded broker's address, logged above>"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\n  %s is running.\n", d.Name)
	if web := app.WebAddr(); web != "" {
		fmt.Fprintf(&b, "    counts:    curl -s http://%s/tables/%s/%s\n", web, d.Table, d.Keys[0])
		fmt.Fprintf(&b, "    metrics:   http://%s/metrics\n", web)
		fmt.Fprintf(&b, "    readiness: http://%s/readyz\n", web)
	}
	fmt.Fprintf(&b, "    send:      %s %s --brokers %s\n", SelfCommand(d.Name), d.SendArgs, brokers)
	if os.Getenv(d.RateEnv) == "" {
		fmt.Fprintf(&b, "    generate:  set %s=5 to send 5 random %s a second\n", d.RateEnv, d.Unit)
	}
	fmt.Fprintln(&b)
	_, err := io.WriteString(w, b.String())
	return err
}

// Generate calls send at the rate set by the environment variable RateEnv
// (unset or 0: it returns at once) until ctx ends, and every two seconds
// logs the counts of Keys read from the worker's HTTP endpoint. send
// sends one record to topic, waiting for the broker's acknowledgement.
func (d Demo) Generate(ctx context.Context, app *mephisto.App, topic string, send func(context.Context) error) error {
	rate, err := RateFromEnv(d.RateEnv)
	if err != nil || rate == 0 {
		return err
	}
	log := Logger(app)
	log.Info("generator on", d.Unit+"_per_second", rate, "env", d.RateEnv)
	tick := time.NewTicker(max(time.Duration(float64(time.Second)/rate), time.Microsecond))
	defer tick.Stop()
	report := time.NewTicker(2 * time.Second)
	defer report.Stop()
	client := &http.Client{Timeout: 2 * time.Second}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			if err := send(ctx); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("send to %s: %w", topic, err)
			}
		case <-report.C:
			web := app.WebAddr()
			if web == "" {
				continue
			}
			attrs := make([]any, 0, 2*len(d.Keys))
			for _, k := range d.Keys {
				attrs = append(attrs, k, ReadCount(ctx, client, web, d.Table, k))
			}
			log.Info("counts", attrs...)
		}
	}
}
