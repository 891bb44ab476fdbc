package mephisto_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/mephistohq/mephisto"
	"github.com/mephistohq/mephisto/codec"
	"github.com/mephistohq/mephisto/kafka"
)

// TestOversizedOutputsGoToTheErrorPolicy (issue 16, defect 1): a handler
// whose send, or table write, would be over the producer's limit fails
// with ErrTooLarge in the handler, not at commit time: its input record
// goes to the dead-letter topic once, the records behind it are processed,
// and the metric counts one dead letter per record. A forged mephisto.*
// header on the input does not reach the dead letter.
func TestOversizedOutputsGoToTheErrorPolicy(t *testing.T) {
	b := startBroker(t)
	app := mephisto.New("big", mephisto.WithBrokers(b.Addr()), mephisto.WithDataDir(t.TempDir()),
		mephisto.WithWebAddr("127.0.0.1:0"), mephisto.WithPartitions(1), mephisto.WithLogger(testLogger(t)),
		mephisto.WithCommitInterval(50*time.Millisecond))
	lines := mephisto.NewTopic(app, "lines", codec.String(), codec.String())
	words := mephisto.NewTopic(app, "words", codec.String(), codec.String())
	counts := mephisto.NewTable(app, "counts", codec.String(), codec.Int64())
	last := mephisto.NewTable(app, "last", codec.String(), codec.String())
	var tooLarge []error
	mephisto.NewAgent(app, "split", lines, func(ctx mephisto.Context, _, line string) error {
		if line == "repeat" {
			err := last.Set(ctx, "k", strings.Repeat("x", 1_100_000))
			tooLarge = append(tooLarge, err)
			return err
		}
		for _, w := range strings.Fields(line) {
			if err := words.Send(ctx, w, w); err != nil { // a 600 KB word twice: over 1 MB
				tooLarge = append(tooLarge, err)
				return err
			}
		}
		return nil
	})
	mephisto.NewAgent(app, "count", words, func(ctx mephisto.Context, w, _ string) error {
		return counts.Update(ctx, w, func(n int64) int64 { return n + 1 })
	})
	runApp(t, app)

	client, err := sarama.NewClient([]string{b.Addr()}, kafka.ClientConfig("test-big"))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	p, err := sarama.NewSyncProducerFromClient(client)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	huge := strings.Repeat("y", 600_000)
	for _, m := range []*sarama.ProducerMessage{
		{Topic: "lines", Key: sarama.StringEncoder("k"), Value: sarama.StringEncoder("a b")},
		{Topic: "lines", Key: sarama.StringEncoder("k"), Value: sarama.StringEncoder(huge),
			Headers: []sarama.RecordHeader{{Key: []byte("mephisto.error"), Value: []byte("forged")}, {Key: []byte("trace"), Value: []byte("t1")}}},
		{Topic: "lines", Key: sarama.StringEncoder("k"), Value: sarama.StringEncoder("repeat")},
		{Topic: "lines", Key: sarama.StringEncoder("k"), Value: sarama.StringEncoder("b c")},
	} {
		if _, _, err := p.SendMessage(m); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 30*time.Second, "the words of the lines that fit", func() (bool, string) {
		return tableEquals(app.WebAddr(), "counts", map[string]int64{"a": 1, "b": 2, "c": 1})
	})
	dl := readTopic(t, b.Addr(), "big-split-dead-letters", 2)
	if len(dl) != 2 {
		t.Fatalf("dead letters: %d, want 2 (one per oversized output)", len(dl))
	}
	bigLetter, repeatLetter := dl[0], dl[1]
	if string(bigLetter.Value) != huge || header(bigLetter, "mephisto.offset") != "1" || header(bigLetter, "trace") != "t1" {
		t.Errorf("dead letter of the huge line: %d bytes, offset %q, trace %q", len(bigLetter.Value), header(bigLetter, "mephisto.offset"), header(bigLetter, "trace"))
	}
	for _, m := range dl {
		if e := header(m, "mephisto.error"); !strings.Contains(e, "over the producer's size limit") {
			t.Errorf("dead letter at offset %s: mephisto.error = %q, want the size limit named", header(m, "mephisto.offset"), e)
		}
		for _, h := range m.Headers {
			if string(h.Value) == "forged" {
				t.Errorf("the input's forged %s header reached the dead letter", h.Key)
			}
		}
	}
	if string(repeatLetter.Value) != "repeat" || header(repeatLetter, "mephisto.offset") != "2" {
		t.Errorf("dead letter of the oversized table write: value %q offset %q", repeatLetter.Value, header(repeatLetter, "mephisto.offset"))
	}
	for _, err := range tooLarge {
		if !errors.Is(err, mephisto.ErrTooLarge) {
			t.Errorf("handler got %v, want an error wrapping ErrTooLarge", err)
		}
	}
	if m := metric(t, app.WebAddr(), "mephisto_dead_letters_total"); !strings.Contains(m, `agent="split"`) || !strings.HasSuffix(m, " 2") {
		t.Errorf("dead-letter metric: %q, want 2 for split", m)
	}
	if m := metric(t, app.WebAddr(), "mephisto_grain_restarts_total"); m != "" {
		t.Errorf("the grain restarted (an oversized output must not fail the commit): %q", m)
	}
}

// TestBrokerRefusedOutputGoesToTheErrorPolicy (issue 16, defect 1): a
// record within the producer's limit but over its topic's
// max.message.bytes is refused by the broker at commit time, for good:
// the input record that produced it goes to the dead-letter topic once,
// and the records behind it are processed.
func TestBrokerRefusedOutputGoesToTheErrorPolicy(t *testing.T) {
	b := startBroker(t)
	admin, err := sarama.NewClusterAdmin([]string{b.Addr()}, kafka.ClientConfig("test-admin"))
	if err != nil {
		t.Fatal(err)
	}
	limit := "2000"
	if err := admin.CreateTopic("small", &sarama.TopicDetail{NumPartitions: 1, ReplicationFactor: 1,
		ConfigEntries: map[string]*string{"max.message.bytes": &limit}}, false); err != nil {
		t.Fatal(err)
	}
	admin.Close()
	app := mephisto.New("refused", mephisto.WithBrokers(b.Addr()), mephisto.WithDataDir(t.TempDir()),
		mephisto.WithWebAddr("127.0.0.1:0"), mephisto.WithPartitions(1), mephisto.WithLogger(testLogger(t)),
		mephisto.WithCommitInterval(50*time.Millisecond))
	in := mephisto.NewTopic(app, "in", codec.String(), codec.String())
	small := mephisto.NewTopic(app, "small", codec.String(), codec.String())
	seen := mephisto.NewTable(app, "seen", codec.String(), codec.Int64())
	mephisto.NewAgent(app, "fwd", in, func(ctx mephisto.Context, k, v string) error {
		if err := seen.Update(ctx, v, func(n int64) int64 { return n + 1 }); err != nil {
			return err
		}
		if v == "big" {
			return small.Send(ctx, k, strings.Repeat("z", 5000))
		}
		return small.Send(ctx, k, v)
	})
	runApp(t, app)
	produce(t, b.Addr(), "in", [][2]string{{"k", "a"}, {"k", "big"}, {"k", "c"}})
	waitFor(t, 60*time.Second, "the records around the refused one", func() (bool, string) {
		return tableEquals(app.WebAddr(), "seen", map[string]int64{"a": 1, "c": 1})
	})
	dl := readTopic(t, b.Addr(), "refused-fwd-dead-letters", 1)
	if len(dl) != 1 || string(dl[0].Value) != "big" || header(dl[0], "mephisto.offset") != "1" {
		t.Fatalf("dead letters: %d, want the one record whose output the broker refused", len(dl))
	}
	if e := header(dl[0], "mephisto.error"); !strings.Contains(e, "small") {
		t.Errorf("mephisto.error = %q, want the refused topic named", e)
	}
	out := readTopic(t, b.Addr(), "small", 2)
	for _, m := range out {
		if len(m.Value) > 2000 {
			t.Errorf("the refused record reached the topic")
		}
	}
	if ok, why := app.Ready(); !ok {
		t.Errorf("not ready after the refused output went to the policy: %s", why)
	}
}
