package kafka

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/IBM/sarama"
)

// Bounds returns the first offset still in a partition's log and its end
// as the client reads it: the high watermark (the offset the next record
// will get) or, if the client reads committed records only, the last
// stable offset. The record before the end may be a transaction marker,
// which no consumer is given: see DataEnd.
func Bounds(client sarama.Client, topic string, partition int32) (oldest, hwm int64, err error) {
	oldest, err = client.GetOffset(topic, partition, sarama.OffsetOldest)
	if err != nil {
		return 0, 0, fmt.Errorf("read start of %s/%d: %w", topic, partition, err)
	}
	hwm, err = stableEnd(client, topic, partition)
	if err != nil {
		return 0, 0, fmt.Errorf("read end of %s/%d: %w", topic, partition, err)
	}
	return oldest, hwm, nil
}

// ReadRange calls fn for every record of topic/partition with an offset in
// [from, until), in order, and returns when the record at until-1 (or a
// later one) has been delivered. Offsets may have gaps (compaction,
// transaction markers), so it stops on the first offset >= until-1, or when
// the consumer's high watermark shows nothing below until is left.
func ReadRange(ctx context.Context, consumer sarama.Consumer, topic string, partition int32, from, until int64, fn func(*sarama.ConsumerMessage) error) error {
	if from >= until {
		return nil
	}
	pc, err := consumer.ConsumePartition(topic, partition, from)
	if err != nil {
		return fmt.Errorf("read %s/%d from %d: %w", topic, partition, from, err)
	}
	defer pc.AsyncClose()
	msgs, errs := pc.Messages(), pc.Errors()
	for n := 0; ; n++ {
		var m *sarama.ConsumerMessage
		var ok bool
		// Take a record without a three-way select while records are
		// buffered (a select per record costs as much as the rest of a
		// restore's work), and look at the context every 1024 records.
		select {
		case m, ok = <-msgs:
		default:
			select {
			case <-ctx.Done():
				return ctx.Err()
			case m, ok = <-msgs:
			case cerr, open := <-errs:
				if open {
					return fmt.Errorf("read %s/%d: %w", topic, partition, cerr)
				}
				errs = nil // closed: never ready again
				continue
			}
		}
		if !ok {
			return errors.New("partition consumer closed")
		}
		if n%1024 == 1023 && ctx.Err() != nil {
			return ctx.Err()
		}
		if m.Offset >= until {
			return nil
		}
		if err := fn(m); err != nil {
			return err
		}
		if m.Offset >= until-1 {
			return nil
		}
	}
}

// Follow reads topic/partition from offset from until ctx is done, calling
// apply for each record in order and tick every interval with the
// partition's high watermark. It returns the first error of the consumer,
// apply or tick, or nil once ctx is done.
func Follow(ctx context.Context, consumer sarama.Consumer, topic string, partition int32, from int64, interval time.Duration,
	apply func(key, value []byte, offset int64) error, tick func(hwm int64) error) error {
	pc, err := consumer.ConsumePartition(topic, partition, from)
	if err != nil {
		return err
	}
	defer pc.AsyncClose()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if err := tick(pc.HighWaterMarkOffset()); err != nil {
				return err
			}
		case m, ok := <-pc.Messages():
			if !ok {
				return errors.New("changelog consumer closed")
			}
			if err := apply(m.Key, m.Value, m.Offset); err != nil {
				return err
			}
		case err := <-pc.Errors():
			if err != nil {
				return err
			}
		}
	}
}

// ReadToEnd calls fn for every record of topic/partition a consumer on
// client is given, from the oldest to the end as Bounds and DataEnd see it
// now (read committed when the client is).
func ReadToEnd(ctx context.Context, client sarama.Client, consumer sarama.Consumer, topic string, partition int32, fn func(*sarama.ConsumerMessage) error) error {
	oldest, end, err := Bounds(client, topic, partition)
	if err != nil {
		return err
	}
	if end, err = DataEnd(client, topic, partition, oldest, end); err != nil {
		return err
	}
	return ReadRange(ctx, consumer, topic, partition, oldest, end, fn)
}
