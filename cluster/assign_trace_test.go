package cluster

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

var rewrite = flag.Bool("rewrite", false, "rewrite the expected output of testdata/assign/*.txt with the actual output")

// TestAssignTrace runs the scenarios in testdata/assign/*.txt. A scenario
// is a list of commands; those that print (assign) are followed by "----"
// and the expected output, up to the next blank line. Lines starting with
// # are comments. Commands:
//
//	topics NAME=N ...            the topics and their partition counts
//	tables N [standbys=S]        table changelog partitions and standby
//	                             count of every member (now and later)
//	member NODE [id=M] [topics=a,b] [active=0,1] [standby=2]
//	       [offsets=2:100,3:90] [standbys=S] [tables=N]
//	                             add (or replace) a member; id defaults to
//	                             NODE-1, topics to all topics; id=- makes a
//	                             member that reported nothing (fresh)
//	offsets NODE P:O ...         set offsets of a member
//	leave NODE                   the member leaves the group
//	assign                       run Assign, print each node's actives and
//	                             standbys and the table partitions that
//	                             moved; afterwards every member reports
//	                             what it got (Active, Standby and, as
//	                             Strategy does, Owned)
//
// After editing a scenario, regenerate its expected output with
//
//	go test ./cluster/ -run TestAssignTrace -rewrite
//
// and review the diff.
func TestAssignTrace(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "assign", "*.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no testdata/assign/*.txt scenarios")
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".txt"), func(t *testing.T) {
			runTrace(t, file)
		})
	}
}

func runTrace(t *testing.T, file string) {
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	env := &traceEnv{topics: map[string]int32{}, lastActive: map[string][]int32{}}
	var out []string
	for i := 0; i < len(lines); i++ {
		line := lines[i]
		out = append(out, line)
		cmd := strings.TrimSpace(line)
		if cmd == "" || strings.HasPrefix(cmd, "#") {
			continue
		}
		if cmd == "----" {
			t.Fatalf("%s:%d: expected output without a command", file, i+1)
		}
		got, prints, err := env.run(cmd)
		if err != nil {
			t.Fatalf("%s:%d: %s: %v", file, i+1, cmd, err)
		}
		if !prints {
			continue
		}
		// The expected block: "----", then lines up to a blank line.
		var want []string
		end := i + 1
		if end < len(lines) && strings.TrimSpace(lines[end]) == "----" {
			end++
			for end < len(lines) && strings.TrimSpace(lines[end]) != "" {
				want = append(want, lines[end])
				end++
			}
		} else if !*rewrite {
			t.Fatalf("%s:%d: %s has no expected output; run with -rewrite to add it:\n%s", file, i+1, cmd, got)
		}
		gotLines := strings.Split(got, "\n")
		if !*rewrite && !slices.Equal(gotLines, want) {
			t.Errorf("%s:%d: %s:\n got:\n%s\nwant:\n%s", file, i+1, cmd, got, strings.Join(want, "\n"))
		}
		out = append(out, "----")
		out = append(out, gotLines...)
		if end < len(lines) && strings.TrimSpace(lines[end]) != "" {
			out = append(out, "")
		}
		i = end - 1
	}
	if *rewrite {
		if err := os.WriteFile(file, []byte(strings.Join(out, "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// traceEnv is the state of one scenario.
type traceEnv struct {
	topics   map[string]int32
	tables   int32
	standbys int
	members  []Member // in the order added
	// lastActive is the table partitions each node was last active for,
	// departed nodes included until the next assign: the "from" of moves.
	lastActive map[string][]int32
}

func (e *traceEnv) run(cmd string) (out string, prints bool, err error) {
	fields := strings.Fields(cmd)
	args := fields[1:]
	switch fields[0] {
	case "topics":
		e.topics = map[string]int32{}
		for _, a := range args {
			name, n, ok := strings.Cut(a, "=")
			count, err := strconv.ParseInt(n, 10, 32)
			if !ok || err != nil {
				return "", false, fmt.Errorf("want NAME=COUNT, got %q", a)
			}
			e.topics[name] = int32(count)
		}
	case "tables":
		if len(args) == 0 {
			return "", false, fmt.Errorf("want tables N [standbys=S]")
		}
		n, err := strconv.ParseInt(args[0], 10, 32)
		if err != nil {
			return "", false, fmt.Errorf("tables: %w", err)
		}
		e.tables = int32(n)
		for _, a := range args[1:] {
			v, ok := strings.CutPrefix(a, "standbys=")
			s, err := strconv.Atoi(v)
			if !ok || err != nil {
				return "", false, fmt.Errorf("want standbys=S, got %q", a)
			}
			e.standbys = s
		}
		for i := range e.members {
			e.members[i].TablePartitions, e.members[i].Standbys = e.tables, e.standbys
		}
	case "member":
		return "", false, e.member(args)
	case "offsets":
		if len(args) == 0 {
			return "", false, fmt.Errorf("want offsets NODE P:O ...")
		}
		i := e.find(args[0])
		if i < 0 {
			return "", false, fmt.Errorf("no member %s", args[0])
		}
		if e.members[i].Offsets == nil {
			e.members[i].Offsets = map[int32]int64{}
		}
		for _, a := range args[1:] {
			if err := parseOffsets(a, e.members[i].Offsets); err != nil {
				return "", false, err
			}
		}
	case "leave":
		if len(args) != 1 || e.find(args[0]) < 0 {
			return "", false, fmt.Errorf("want leave NODE of a member")
		}
		e.members = slices.Delete(e.members, e.find(args[0]), e.find(args[0])+1)
	case "assign":
		return e.assign(), true, nil
	default:
		return "", false, fmt.Errorf("unknown command %q", fields[0])
	}
	return "", false, nil
}

func (e *traceEnv) find(node string) int {
	return slices.IndexFunc(e.members, func(m Member) bool {
		return m.NodeID == node || (m.NodeID == "" && m.MemberID == node)
	})
}

func (e *traceEnv) member(args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("want member NODE [key=value ...]")
	}
	m := Member{
		MemberID:        args[0] + "-1",
		NodeID:          args[0],
		Standbys:        e.standbys,
		TablePartitions: e.tables,
	}
	for t := range e.topics {
		m.Topics = append(m.Topics, t)
	}
	slices.Sort(m.Topics)
	for _, a := range args[1:] {
		k, v, ok := strings.Cut(a, "=")
		if !ok {
			return fmt.Errorf("want key=value, got %q", a)
		}
		var err error
		switch k {
		case "id":
			if v == "-" {
				// Reported nothing: the adapter's view of a member
				// with empty or unreadable user data.
				m = Member{MemberID: args[0], Topics: m.Topics, Standbys: -1}
			} else {
				m.MemberID = v
			}
		case "topics":
			m.Topics = strings.Split(v, ",")
		case "active":
			m.Active, err = parseParts(v)
		case "standby":
			m.Standby, err = parseParts(v)
		case "offsets":
			m.Offsets = map[int32]int64{}
			err = parseOffsets(v, m.Offsets)
		case "standbys":
			m.Standbys, err = strconv.Atoi(v)
		case "tables":
			var n int64
			n, err = strconv.ParseInt(v, 10, 32)
			m.TablePartitions = int32(n)
		default:
			err = fmt.Errorf("unknown key %q", k)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", a, err)
		}
	}
	if i := e.find(args[0]); i >= 0 {
		e.members[i] = m
	} else {
		e.members = append(e.members, m)
	}
	if len(m.Active) > 0 {
		e.lastActive[args[0]] = m.Active
	}
	return nil
}

func parseParts(v string) ([]int32, error) {
	var out []int32
	for _, s := range strings.Split(v, ",") {
		p, err := strconv.ParseInt(s, 10, 32)
		if err != nil {
			return nil, err
		}
		out = append(out, int32(p))
	}
	return out, nil
}

func parseOffsets(v string, into map[int32]int64) error {
	for _, s := range strings.Split(v, ",") {
		ps, offs, ok := strings.Cut(s, ":")
		p, err1 := strconv.ParseInt(ps, 10, 32)
		o, err2 := strconv.ParseInt(offs, 10, 64)
		if !ok || err1 != nil || err2 != nil {
			return fmt.Errorf("want P:OFFSET, got %q", s)
		}
		into[int32(p)] = o
	}
	return nil
}

func (e *traceEnv) assign() string {
	plan, err := Assign(e.members, e.topics)
	if err != nil {
		return "error: " + err.Error()
	}
	var b strings.Builder
	for _, n := range plan.Nodes {
		fmt.Fprintf(&b, "%s: %s", n.NodeID, formatActives(plan.Assignments[n.MemberID]))
		if len(plan.Partitions) > 0 {
			fmt.Fprintf(&b, " standby=%s", formatParts(plan.StandbyPartitions(n.NodeID)))
		}
		b.WriteString("\n")
	}
	if len(plan.Partitions) > 0 {
		prev := map[int32]string{}
		nodes := make([]string, 0, len(e.lastActive))
		for node := range e.lastActive {
			nodes = append(nodes, node)
		}
		slices.Sort(nodes)
		for _, node := range nodes {
			for _, p := range e.lastActive[node] {
				if _, taken := prev[p]; !taken {
					prev[p] = node
				}
			}
		}
		var moves []string
		for _, pp := range plan.Partitions {
			from, ok := prev[pp.Partition]
			if !ok || from == pp.Active {
				continue
			}
			how := "cold"
			if i := e.find(pp.Active); i >= 0 && slices.Contains(e.members[i].Standby, pp.Partition) {
				how = fmt.Sprintf("standby@%d", e.members[i].Offsets[pp.Partition])
			}
			moves = append(moves, fmt.Sprintf("%d %s->%s (%s)", pp.Partition, from, pp.Active, how))
		}
		if len(moves) == 0 {
			moves = []string{"none"}
		}
		fmt.Fprintf(&b, "moves: %s\n", strings.Join(moves, ", "))
	}

	// Every member reports what it got; departed nodes are forgotten.
	e.lastActive = map[string][]int32{}
	for i, m := range e.members {
		node := m.NodeID
		if node == "" {
			node = m.MemberID
		}
		e.members[i].Active = plan.ActivePartitions(node)
		e.members[i].Standby = plan.StandbyPartitions(node)
		e.members[i].Owned = plan.Actives(node) // as Strategy reports it
		if len(plan.Partitions) > 0 {
			var table []int32
			for _, pp := range plan.Partitions {
				if pp.Active == node {
					table = append(table, pp.Partition)
				}
			}
			e.lastActive[node] = table
		}
	}
	return strings.TrimRight(b.String(), "\n")
}
