package kafka

import (
	"github.com/IBM/sarama"

	"github.com/mephistohq/mephisto/actors/partition"
)

// Message returns o as sarama sends it.
func Message(o partition.Output) *sarama.ProducerMessage {
	pm := &sarama.ProducerMessage{Topic: o.Topic, Partition: o.Partition, Key: bytesEncoder(o.Key), Value: bytesEncoder(o.Value)}
	if len(o.Headers) > 0 {
		pm.Headers = make([]sarama.RecordHeader, len(o.Headers))
		for i, h := range o.Headers {
			pm.Headers[i] = sarama.RecordHeader{Key: []byte(h.Key), Value: h.Value}
		}
	}
	return pm
}

// bytesEncoder keeps a nil key nil on the wire (sarama.ByteEncoder(nil)
// would be an empty, non-null key).
func bytesEncoder(b []byte) sarama.Encoder {
	if b == nil {
		return nil
	}
	return sarama.ByteEncoder(b)
}
