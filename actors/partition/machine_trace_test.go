package partition

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mephistohq/mephisto/state/shard"
)

var rewrite = flag.Bool("rewrite", false, "rewrite the expected output of testdata/machine/*.txt with the actual output")

// TestMachineTrace runs the scenarios in testdata/machine/*.txt against a
// Machine with an in-memory store and a clock set by hand. A scenario is a
// list of commands; each that returns a Ready is followed by "----", what
// the Ready says, and a blank line. Lines starting with # are comments.
// Commands:
//
//	agent NAME [topic=T] [policy=dead-letter|skip|stop] [concurrency=N] [batch=N/WITHIN]
//	                          declare an agent (before new). Its handler
//	                          reads each record's value as a script:
//	                          "ok" counts the key in table counts, "send"
//	                          also sends the value to topic out, "fail"
//	                          always fails, "failN" fails N times, "panic"
//	                          panics once, "poison" is undecodable
//	new [attempts=N] [uncommitted=N] [interval=D]
//	                          start the machine and Restart it
//	deliver [caught-up] OFFSET:VALUE[:KEY] ...
//	                          records of topic t (key k unless given)
//	tick | wake | drain       the inputs of the same names
//	acked SEQ [CHANGELOG=OFFSET]
//	                          commit SEQ's records are acknowledged
//	stored SEQ                apply the last write to the store, then Stored
//	failed TEXT               the driver could not carry out a Ready
//	restart                   Restart with the store's source offsets
//	direct AGENT KEY VALUE    a direct message
//	advance D                 move the clock
//	store                     print the store (not a Ready)
//
// After editing a scenario, regenerate its expected output with
//
//	go test ./actors/partition/ -run TestMachineTrace -rewrite
//
// and review the diff.
func TestMachineTrace(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "machine", "*.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no testdata/machine/*.txt scenarios")
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".txt"), func(t *testing.T) {
			runMachineTrace(t, file)
		})
	}
}

// traceEnv is a scenario's world: the store, the clock, the machine.
type traceEnv struct {
	agents  []*Agent
	m       *Machine
	now     time.Time
	rows    map[string]string // table counts
	sources map[string]int64
	write   *Write // the last write handed out
	calls   map[string]int
}

func runMachineTrace(t *testing.T, file string) {
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	env := &traceEnv{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), rows: map[string]string{}, sources: map[string]int64{}, calls: map[string]int{}}
	var out strings.Builder
	lines := strings.Split(string(data), "\n")
	for i := 0; i < len(lines); i++ {
		line := lines[i]
		if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#") {
			out.WriteString(line + "\n")
			continue
		}
		out.WriteString(line + "\n")
		got, err := env.run(strings.Fields(line))
		if err != nil {
			t.Fatalf("%s:%d: %s: %v", file, i+1, line, err)
		}
		// Skip the expected block in the file, and the blank line that
		// ends it (written again below).
		if i+1 < len(lines) && lines[i+1] == "----" {
			i++
			for i+1 < len(lines) && strings.TrimSpace(lines[i+1]) != "" {
				i++
			}
			if i+1 < len(lines) && i+2 < len(lines) {
				i++
			}
		}
		if got != "" {
			out.WriteString("----\n" + got + "\n")
		}
	}
	want := strings.TrimRight(string(data), "\n") + "\n"
	got := strings.TrimRight(out.String(), "\n") + "\n"
	if *rewrite {
		if err := os.WriteFile(file, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	if got != want {
		t.Errorf("%s: output differs (run with -rewrite and review the diff):\n%s", file, diffLines(want, got))
	}
}

func diffLines(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	for i := 0; i < max(len(w), len(g)); i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			fmt.Fprintf(&b, "line %d:\n  want: %s\n  got:  %s\n", i+1, wl, gl)
		}
	}
	return b.String()
}

func (e *traceEnv) run(args []string) (string, error) {
	kv := func(from int) map[string]string {
		m := map[string]string{}
		for _, a := range args[from:] {
			k, v, _ := strings.Cut(a, "=")
			m[k] = v
		}
		return m
	}
	var rd Ready
	switch args[0] {
	case "agent":
		opts := kv(2)
		a := &Agent{Name: args[1], Topic: "t", DeadLetterTopic: args[1] + "-dead-letters"}
		if v, ok := opts["topic"]; ok {
			a.Topic = v
		}
		switch opts["policy"] {
		case "skip":
			a.Policy = Skip
		case "stop":
			a.Policy = Stop
		}
		if v, ok := opts["concurrency"]; ok {
			a.Concurrency, _ = strconv.Atoi(v)
		}
		if v, ok := opts["batch"]; ok {
			n, within, _ := strings.Cut(v, "/")
			d, err := time.ParseDuration(within)
			if err != nil {
				return "", err
			}
			size, _ := strconv.Atoi(n)
			a.Batch = &Batch{N: size, Within: d, Flush: func(ev *Event, items []any) error {
				var keys []string
				for _, it := range items {
					keys = append(keys, it.(string))
				}
				return ev.Send("out", []byte("batch"), []byte(strings.Join(keys, ",")), true)
			}}
		}
		a.Run = e.handler(a)
		e.agents = append(e.agents, a)
		return "", nil
	case "new":
		opts := kv(1)
		cfg := Config{Partition: 0, Agents: e.agents, Tables: []*Table{{Name: "counts", Changelog: "counts-changelog"}},
			Readers: []shard.Reader{e.read}, CacheKeys: 100, Now: func() time.Time { return e.now },
			Route: func(topic string, key []byte, keyed bool, fallback int32) (int32, error) {
				if keyed && key != nil {
					return int32(len(key) % 4), nil
				}
				return fallback, nil
			}}
		cfg.MaxAttempts, _ = strconv.Atoi(opts["attempts"])
		cfg.MaxUncommitted, _ = strconv.Atoi(opts["uncommitted"])
		if v, ok := opts["interval"]; ok {
			cfg.CommitInterval, _ = time.ParseDuration(v)
		}
		e.m = New(cfg)
		rd = e.m.Restart(e.storedSources())
	case "deliver":
		caught := false
		var recs Records
		for _, a := range args[1:] {
			if a == "caught-up" {
				caught = true
				continue
			}
			parts := strings.Split(a, ":")
			off, err := strconv.ParseInt(parts[0], 10, 64)
			if err != nil {
				return "", err
			}
			key := "k"
			if len(parts) > 2 {
				key = parts[2]
			}
			recs = append(recs, Record{Topic: "t", Partition: 0, Offset: off, Key: []byte(key), Value: []byte(parts[1])})
		}
		rd = e.m.Deliver(recs, caught)
	case "tick":
		rd = e.m.Tick()
	case "wake":
		rd = e.m.Wake()
	case "drain":
		rd = e.m.Drain()
	case "acked":
		seq, _ := strconv.ParseUint(args[1], 10, 64)
		offsets := map[string]int64{}
		for k, v := range kv(2) {
			offsets[k], _ = strconv.ParseInt(v, 10, 64)
		}
		rd = e.m.Acked(seq, offsets)
	case "stored":
		seq, _ := strconv.ParseUint(args[1], 10, 64)
		if w := e.write; w != nil && w.Seq == seq {
			for _, r := range w.Rows[0] {
				if r.Absent {
					delete(e.rows, r.Key)
				} else {
					e.rows[r.Key] = string(r.Raw)
				}
			}
			for t, off := range w.Sources {
				e.sources[t] = off
			}
			e.write = nil
		}
		rd = e.m.Stored(seq)
	case "failed":
		rd = e.m.Failed(fmt.Errorf("%s", strings.Join(args[1:], " ")))
	case "restart":
		rd = e.m.Restart(e.storedSources())
	case "direct":
		res, r := e.m.Direct(args[1], []byte(args[2]), []byte(args[3]), nil)
		rd = r
		s := e.printReady(rd)
		if res.Err != "" {
			return s + "direct error: " + firstLine(res.Err) + "\n", nil
		}
		return s + fmt.Sprintf("direct reply: %q\n", res.Reply), nil
	case "advance":
		d, err := time.ParseDuration(args[1])
		if err != nil {
			return "", err
		}
		e.now = e.now.Add(d)
		return "", nil
	case "store":
		var b strings.Builder
		keys := make([]string, 0, len(e.rows))
		for k := range e.rows {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(&b, "counts %s=%s\n", k, e.rows[k])
		}
		fmt.Fprintf(&b, "sources %s\n", offsets(e.sources))
		return b.String(), nil
	default:
		return "", fmt.Errorf("unknown command %q", args[0])
	}
	if rd.Write != nil {
		e.write = rd.Write
	}
	return e.printReady(rd), nil
}

func (e *traceEnv) storedSources() map[string]int64 {
	m := map[string]int64{}
	for k, v := range e.sources {
		m[k] = v
	}
	return m
}

func (e *traceEnv) read(key []byte) ([]byte, bool, error) {
	v, ok := e.rows[string(key)]
	return []byte(v), ok, nil
}

// handler is the scripted handler of agent a.
func (e *traceEnv) handler(a *Agent) func(ev *Event) error {
	return func(ev *Event) error {
		r := ev.Record()
		script := string(r.Value)
		id := fmt.Sprintf("%s/%d", a.Name, r.Offset)
		e.calls[id]++
		n := e.calls[id]
		switch {
		case script == "poison":
			return fmt.Errorf("%w: cannot decode %q", ErrPoison, script)
		case script == "fail":
			return fmt.Errorf("attempt %d failed", n)
		case strings.HasPrefix(script, "fail"):
			times, _ := strconv.Atoi(strings.TrimPrefix(script, "fail"))
			if n <= times {
				return fmt.Errorf("attempt %d failed", n)
			}
		case script == "panic" && n == 1:
			panic("boom")
		}
		if a.Batch != nil {
			return ev.AddToBatch(string(r.Key))
		}
		if sh := ev.Shard(0); !ev.ReadOnly() {
			count := 0
			if en, ok := sh.Cached(r.Key, false); ok && !en.Absent {
				count, _ = strconv.Atoi(string(en.Raw))
			} else if raw, ok, _ := sh.Get(r.Key); ok {
				count, _ = strconv.Atoi(string(raw))
			}
			sh.Put(r.Key, nil, nil, []byte(strconv.Itoa(count+1)), false)
		}
		if script == "send" || a.Concurrency > 1 {
			if err := ev.Send("out", r.Key, r.Value, true); err != nil {
				return err
			}
		}
		ev.SetReply([]byte("re:" + script))
		return nil
	}
}

func (e *traceEnv) printReady(rd Ready) string {
	var b strings.Builder
	for _, o := range rd.Outputs {
		fmt.Fprintf(&b, "out %s/%d %s=%s%s\n", o.Topic, o.Partition, o.Key, o.Value, headers(o.Headers))
	}
	if c := rd.Commit; c != nil {
		var recs []string
		for _, o := range c.Changelog {
			recs = append(recs, fmt.Sprintf("%s=%s", o.Key, o.Value))
		}
		fmt.Fprintf(&b, "commit %d: changelog [%s]\n", c.Seq, strings.Join(recs, " "))
	}
	if w := rd.Write; w != nil {
		var rows []string
		for _, r := range w.Rows[0] {
			if r.Absent {
				rows = append(rows, r.Key+"=<deleted>")
			} else {
				rows = append(rows, r.Key+"="+string(r.Raw))
			}
		}
		var cl []string
		for i, off := range w.Changelog {
			cl = append(cl, fmt.Sprintf("%d@%d", i, off))
		}
		slices.Sort(cl)
		fmt.Fprintf(&b, "write %d: rows [%s] changelog [%s] sources %s\n", w.Seq, strings.Join(rows, " "), strings.Join(cl, " "), offsets(w.Sources))
	}
	if len(rd.Marks) > 0 {
		fmt.Fprintf(&b, "marks %s\n", offsets(rd.Marks))
	}
	if rd.Processed {
		b.WriteString("processed\n")
	}
	if rd.Stopped != nil {
		fmt.Fprintf(&b, "stopped: %s\n", firstLine(rd.Stopped.Error()))
	}
	if rd.Fail != nil {
		fmt.Fprintf(&b, "fail: %s\n", firstLine(rd.Fail.Error()))
	}
	if rd.Drained {
		if rd.DrainErr != nil {
			fmt.Fprintf(&b, "drained: %s\n", firstLine(rd.DrainErr.Error()))
		} else {
			b.WriteString("drained\n")
		}
	}
	if rd.WakeAfter > 0 {
		fmt.Fprintf(&b, "wake after %v\n", rd.WakeAfter)
	}
	if b.Len() == 0 {
		b.WriteString("nothing\n")
	}
	return b.String()
}

func headers(hs []Header) string {
	var parts []string
	for _, h := range hs {
		if h.Key == HeaderError {
			parts = append(parts, h.Key+"="+firstLine(string(h.Value)))
			continue
		}
		parts = append(parts, h.Key+"="+string(h.Value))
	}
	if len(parts) == 0 {
		return ""
	}
	return " [" + strings.Join(parts, " ") + "]"
}

func offsets(m map[string]int64) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s=%d", k, m[k]))
	}
	return "{" + strings.Join(parts, " ") + "}"
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}
