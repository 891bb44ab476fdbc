package node

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/IBM/sarama"

	"github.com/mephistohq/mephisto/actors/partition"
	"github.com/mephistohq/mephisto/kafka"
	"github.com/mephistohq/mephisto/state"
)

// The functions of this file serve the app binary's client commands, which
// talk to Kafka without joining the cluster.

// ClientSend produces one record to topic as a client (not a cluster
// member), on the partition its key hashes to (0 without a key), and
// returns where it went.
func ClientSend(ctx context.Context, brokers []string, sec kafka.Security, clientID, topic string, key, value []byte) (int32, int64, error) {
	n, err := sec.Net()
	if err != nil {
		return 0, 0, err
	}
	client, err := clientConnect(brokers, n.ClientConfig(clientID))
	if err != nil {
		return 0, 0, err
	}
	defer client.Close()
	parts, err := client.Partitions(topic)
	if err != nil {
		return 0, 0, fmt.Errorf("topic %s: %w (a worker creates the app's topics when it starts)", topic, err)
	}
	p := int32(0)
	if key != nil {
		p = kafka.Partition(key, int32(len(parts)))
	}
	prod, err := kafka.NewProducer(client, nil)
	if err != nil {
		return 0, 0, err
	}
	defer prod.Close()
	off, err := prod.SendSync(ctx, kafka.Message(partition.Output{Topic: topic, Partition: p, Key: key, Value: value}))
	return p, off, err
}

// ClientAsk asks a reply agent of app through its topic as a client: it
// sends the request with a reply-to header naming its own partition of the
// reply topic and returns the reply. ctx bounds the wait.
func ClientAsk(ctx context.Context, brokers []string, sec kafka.Security, app, topic string, key, value []byte, keyed bool) ([]byte, error) {
	n, err := sec.Net()
	if err != nil {
		return nil, err
	}
	pclient, err := clientConnect(brokers, n.ClientConfig(app+"-cli"))
	if err != nil {
		return nil, err
	}
	defer pclient.Close()
	cclient, err := sarama.NewClient(brokers, n.ConsumerConfig(app+"-cli-replies"))
	if err != nil {
		return nil, fmt.Errorf("connect to Kafka at %s: %w", strings.Join(brokers, ","), err)
	}
	defer cclient.Close()
	consumer, err := sarama.NewConsumerFromClient(cclient)
	if err != nil {
		return nil, err
	}
	defer consumer.Close()
	prod, err := kafka.NewProducer(pclient, nil)
	if err != nil {
		return nil, err
	}
	defer prod.Close()
	counts := func(t string) (int32, error) {
		ps, err := cclient.Partitions(t)
		return int32(len(ps)), err
	}
	req, err := kafka.NewRequester(kafka.RequesterConfig{Consumer: consumer, Producer: prod, App: app, Partitions: counts})
	if err != nil {
		return nil, err
	}
	defer req.Close()
	return ask(ctx, req, topic, key, value, keyed, int32(time.Now().UnixNano()%1024))
}

// clientConnect connects a client command: one probe of the brokers
// first, so that a refused password or certificate fails the command at
// once with its cause and what to do (no retries: the operator is there).
func clientConnect(brokers []string, cfg *sarama.Config) (sarama.Client, error) {
	if err := kafka.Probe(brokers, cfg); err != nil {
		return nil, err
	}
	client, err := sarama.NewClient(brokers, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to Kafka at %s: %w", strings.Join(brokers, ","), err)
	}
	return client, nil
}

// ResetState wipes the table state in dir; state.Reset refuses while a
// worker holds the dir, naming it.
func ResetState(dir string) error { return state.Reset(dir) }
