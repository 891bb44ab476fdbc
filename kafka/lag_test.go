package kafka

import (
	"testing"

	"github.com/IBM/sarama"
)

// TestGroupLag: with records on three partitions and a group that
// committed some of them, GroupLag counts what is beyond the commits per
// partition, and EndOffsets reads every partition's end.
func TestGroupLag(t *testing.T) {
	b := startTestBroker(t, BrokerConfig{Listen: "127.0.0.1:0", DataDir: t.TempDir()})
	adm := newAdmin(t, b.Addr())
	if err := adm.CreateTopic("lag", &sarama.TopicDetail{NumPartitions: 3, ReplicationFactor: 1}, false); err != nil {
		t.Fatal(err)
	}
	var msgs []*sarama.ProducerMessage
	for p, n := range []int{5, 2, 0} {
		for range n {
			msgs = append(msgs, msg("lag", int32(p), "k", "v"))
		}
	}
	produce(t, b.Addr(), msgs...)

	client, err := sarama.NewClient([]string{b.Addr()}, saramaConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	ends := EndOffsets(client, map[string][]int32{"lag": {0, 1, 2}})
	if want := map[int32]int64{0: 5, 1: 2, 2: 0}; len(ends["lag"]) != 3 || ends["lag"][0] != want[0] || ends["lag"][1] != want[1] || ends["lag"][2] != want[2] {
		t.Errorf("EndOffsets = %v, want %v", ends["lag"], want)
	}

	// A commit outside group management (generation -1), as a tool's.
	coord, err := client.Coordinator("g")
	if err != nil {
		t.Fatal(err)
	}
	req := &sarama.OffsetCommitRequest{Version: 2, ConsumerGroup: "g", ConsumerGroupGeneration: -1}
	req.AddBlock("lag", 0, 3, 0, "")
	resp, err := coord.CommitOffset(req)
	if err != nil {
		t.Fatal(err)
	}
	if kerr := resp.Errors["lag"][0]; kerr != sarama.ErrNoError {
		t.Fatalf("commit: %v", kerr)
	}

	got := GroupLag(adm, client, "g", map[string]int32{"lag": 3})
	if want := map[int32]int64{0: 2, 1: 2, 2: 0}; got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
		t.Errorf("GroupLag = %v, want %v (partition 0 committed at 3 of 5; 1 never committed)", got, want)
	}
}
