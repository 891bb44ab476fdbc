package kafka

import (
	"github.com/IBM/sarama"

	"github.com/mephistohq/mephisto/actors/partition"
)

// Message returns o as sarama sends it.
func Message(o partition.Output) *sarama.ProducerMessage {
	m := &message{key: o.Key, value: o.Value}
	m.pm = sarama.ProducerMessage{Topic: o.Topic, Partition: o.Partition, Timestamp: o.Timestamp}
	// A nil key stays nil on the wire (a non-nil Encoder of nil would be
	// an empty, non-null key); a nil value is a tombstone.
	if o.Key != nil {
		m.pm.Key = &m.key
	}
	if o.Value != nil {
		m.pm.Value = &m.value
	}
	if len(o.Headers) > 0 {
		m.pm.Headers = make([]sarama.RecordHeader, len(o.Headers))
		for i, h := range o.Headers {
			m.pm.Headers[i] = sarama.RecordHeader{Key: []byte(h.Key), Value: h.Value}
		}
	}
	return &m.pm
}

// message is a record to produce with its key and value encoders, in one
// allocation (an Encoder made of a []byte would be one more each).
type message struct {
	pm         sarama.ProducerMessage
	key, value sarama.ByteEncoder
}
