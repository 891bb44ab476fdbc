// Package agenttest holds the multi-process tests of agents' messaging: a
// dev broker (`mephisto broker`) and workers of the test app in ./testapp
// run as real OS processes that gossip over loopback and reach each other's
// actors over protoactor remote (--actor), and the tests exercise both
// messaging paths across them:
//
//   - through Kafka: the app binary's `ask` and `send` commands run as
//     clients, and Join and Map run inside a third worker process (an
//     App.Task enabled by ATEST_JOIN=1);
//   - by PID: Request and SendPID from one worker to the grains of the
//     other (an App.Task enabled by ATEST_PID=1); a protobuf message of a
//     type grains do not know (refused with an error envelope), and one of
//     a type the receiving program never registered (no answer; the node
//     survives and answers the next request); and a request to the PID of
//     a node killed with SIGKILL, which must fail with ErrNodeDead before
//     its deadline.
//
// The test app's tasks report what they saw as JSON files (the types of
// this package), written atomically, that the tests read.
//
//	go test -count=1 ./internal/agenttest/
//
// Every test runs twice, from the same code (issue 10): subtest kfake on
// a dev broker (`mephisto broker`) of its own, subtest kafka on Apache
// Kafka in KRaft mode (internal/proctest), one broker the package's tests
// share — each test's app, consumer group and topics are named after it
// there (EnvAppName, EnvTopicPrefix). The kafka subtests skip, saying why,
// without Java 17 and Maven or with MEPHISTO_KAFKA_OFF set.
//
// Every process's stdout and stderr go to files under
// $TMPDIR/mephisto-agenttest-logs/<test>/; they are kept if the test fails
// (the tail of each stderr is also logged) or if AGENTTEST_KEEP_LOGS is set.
package agenttest

import (
	"encoding/json"
	"os"
	"path/filepath"
	"time"
)

// Environment variables the test app reads.
const (
	// EnvJoin set to 1 runs the join task: Join and Map over the adding
	// agent once the worker is ready, reported to EnvOut as a JoinReport.
	EnvJoin = "ATEST_JOIN"
	// EnvPID set to 1 runs the pid task: requests by PID to the grains of
	// another node, reported to EnvOut as a PIDReport; then, once the file
	// EnvGo exists, a request to the same (by then dead) node, reported to
	// EnvOut+DeadSuffix as a DeadReport.
	EnvPID = "ATEST_PID"
	// EnvOut names the file a task writes its report to.
	EnvOut = "ATEST_OUT"
	// EnvGo names the file whose creation lets the pid task go on after
	// the test killed the other node.
	EnvGo = "ATEST_GO"
	// EnvAppName replaces the app's name "atest" (its consumer group and
	// the prefix of its changelog and replies topics), and EnvTopicPrefix
	// goes in front of its input topics adding and tally: each test names
	// its own on a broker the tests share (Apache Kafka). Both are unset on
	// kfake.
	EnvAppName     = "ATEST_APP_NAME"
	EnvTopicPrefix = "ATEST_TOPIC_PREFIX"
)

// DeadSuffix is appended to EnvOut for the pid task's second report.
const DeadSuffix = ".dead"

// JoinValues is how many requests the join task makes with Join and with
// Map. Request i adds A=i and B=JoinB.
const (
	JoinValues = 20
	JoinB      = 1000
)

// JoinReport is what the join task saw.
type JoinReport struct {
	Node string `json:"node"`
	// Join is Join's result (nil if it failed, see JoinErr).
	Join    []int  `json:"join"`
	JoinErr string `json:"join_err,omitempty"`
	// Map lists Map's results in the order they arrived.
	Map []MapResult `json:"map"`
	// AskMillis are the round trips of sequential keyed Asks made after
	// Join and Map, for the latency report.
	AskMillis []float64 `json:"ask_ms"`
}

// MapResult is one result of Map.
type MapResult struct {
	Index int    `json:"index"`
	Value int    `json:"value"`
	Err   string `json:"err,omitempty"`
}

// Probe is one request by PID.
type Probe struct {
	Key    string  `json:"key"`
	PID    string  `json:"pid"` // address/id
	Addr   string  `json:"addr"`
	Want   int     `json:"want"`
	Got    int     `json:"got"`
	Err    string  `json:"err,omitempty"`
	Millis float64 `json:"ms"`
}

// PIDReport is what the pid task saw while both nodes ran.
type PIDReport struct {
	Node      string `json:"node"`
	SelfActor string `json:"self_actor"` // this node's actor address
	// Remote are requests by PID to keys the other node owns (each
	// retried until its grain answered; Attempts counts the tries).
	Remote   []Probe `json:"remote"`
	Attempts int     `json:"attempts"`
	// SendPIDKey got SendPIDAmount from tally.SendPID to the other node's
	// grain (SendPIDErr if that failed): the test reads it back over HTTP.
	SendPIDKey    string `json:"sendpid_key"`
	SendPIDAmount int64  `json:"sendpid_amount"`
	SendPIDErr    string `json:"sendpid_err,omitempty"`
	// Unknown is the answer of the other node's grain to a protobuf
	// message of a type grains do not know (wrapperspb.StringValue).
	UnknownReplyType string `json:"unknown_reply_type"`
	UnknownError     string `json:"unknown_error"` // the envelope's Error
	UnknownErr       string `json:"unknown_err,omitempty"`
	// After is a request by PID to the same grain after the unknown
	// message: it must still answer.
	After Probe `json:"after"`
	// Foreign is a protobuf message of a type the other node's program
	// has never registered (built at run time with dynamicpb): protoactor
	// cannot even decode it there. ForeignErr is how the request future
	// ended (ForeignReplyType its reply, if any).
	ForeignReplyType string  `json:"foreign_reply_type"`
	ForeignErr       string  `json:"foreign_err,omitempty"`
	ForeignMillis    float64 `json:"foreign_ms"`
	// AfterForeign is the first request by PID to the same grain after the
	// foreign message, and AfterForeignOK the first that succeeded (after
	// AfterForeignTries tries, AfterForeignSeconds after the foreign
	// message's request ended).
	AfterForeign        Probe   `json:"after_foreign"`
	AfterForeignOK      Probe   `json:"after_foreign_ok"`
	AfterForeignTries   int     `json:"after_foreign_tries"`
	AfterForeignSeconds float64 `json:"after_foreign_s"`
	// Round trips of sequential requests to the other node's keys, by PID
	// and through Kafka (Ask).
	PIDMillis []float64 `json:"pid_ms"`
	AskMillis []float64 `json:"ask_ms"`
}

// DeadReport is what the pid task saw after the test killed the other node.
type DeadReport struct {
	Key string `json:"key"`
	PID string `json:"pid"`
	// The request to the old PID: when it started and ended, its deadline
	// (start + the request's timeout), and how it failed.
	Start        time.Time `json:"start"`
	End          time.Time `json:"end"`
	Deadline     time.Time `json:"deadline"`
	Got          int       `json:"got"`
	Err          string    `json:"err"`
	IsNodeDead   bool      `json:"is_node_dead"`
	IsTimeout    bool      `json:"is_timeout"`
	IsNoOwner    bool      `json:"is_no_owner"`
	IsRemote     bool      `json:"is_remote"`
	LookupErr    string    `json:"lookup_err,omitempty"`     // agent.PID(key) right after the failure
	LookupIsDead bool      `json:"lookup_is_dead,omitempty"` // … and whether it is ErrNodeDead
	// Recovered: looking the PID up again until the key's partition
	// moved, then requesting by the new PID.
	Recovered      Probe   `json:"recovered"`
	RecoveredAfter float64 `json:"recovered_after_s"` // seconds after End
	RecoverErrs    int     `json:"recover_errs"`      // failed tries meanwhile
}

// WriteJSON writes v to path atomically (a temporary file renamed into
// place), so a reader polling for path never sees half of it.
func WriteJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return os.Rename(tmp.Name(), path)
}
