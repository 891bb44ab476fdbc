package proctest_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/mephistohq/mephisto/internal/proctest"
	"github.com/mephistohq/mephisto/kafka"
)

// TestKafkaCluster starts three Apache Kafka brokers, creates a topic
// replicated on all of them, stops one cleanly and restarts it on the same
// ports and data dir: the cluster keeps its id and the replica catches up.
func TestKafkaCluster(t *testing.T) {
	t.Parallel()
	k := proctest.StartKafkaT(t, proctest.KafkaSpec{Brokers: 3, LogDir: proctest.LogDir(t, "proctest")})
	if got := len(strings.Split(k.Bootstrap(), ",")); got != 3 {
		t.Fatalf("Bootstrap() = %q, want 3 addresses", k.Bootstrap())
	}
	admin, err := sarama.NewClusterAdmin(k.Addrs(), kafka.ClientConfig("proctest"))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	brokers, controller, err := admin.DescribeCluster()
	if err != nil {
		t.Fatal(err)
	}
	if len(brokers) != 3 || controller < 1 {
		t.Fatalf("DescribeCluster: %d brokers, controller %d; want 3 and a controller", len(brokers), controller)
	}
	if err := admin.CreateTopic("replicated", &sarama.TopicDetail{NumPartitions: 2, ReplicationFactor: 3}, false); err != nil {
		t.Fatal(err)
	}
	isr := func() (bool, string) {
		md, err := admin.DescribeTopics([]string{"replicated"})
		if err != nil || len(md) != 1 || md[0].Err != sarama.ErrNoError {
			return false, "describe: " + errString(err, md)
		}
		for _, p := range md[0].Partitions {
			if len(p.Isr) != 3 {
				return false, fmt.Sprintf("partition %d: in-sync replicas %v", p.ID, p.Isr)
			}
		}
		return true, ""
	}
	proctest.WaitForT(t, time.Minute, "3 in-sync replicas", isr)

	if err := k.StopBroker(2); err != nil {
		t.Fatal(err)
	}
	if err := k.RestartBroker(2); err != nil {
		t.Fatal(err)
	}
	proctest.WaitForT(t, time.Minute, "3 in-sync replicas after broker 3's restart", isr)
	_, controller2, err := admin.DescribeCluster()
	if err != nil || controller2 < 1 {
		t.Fatalf("after the restart: controller %d, %v", controller2, err)
	}
}

func errString(err error, md []*sarama.TopicMetadata) string {
	if err != nil {
		return err.Error()
	}
	if len(md) == 1 {
		return md[0].Err.Error()
	}
	return "no metadata"
}
