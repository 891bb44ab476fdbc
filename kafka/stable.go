package kafka

import (
	"encoding/binary"
	"fmt"
	"sort"

	"github.com/IBM/sarama"
)

// stableEnd returns the end of topic/partition as a consumer at the
// client's isolation level sees it: the high watermark, or, read
// committed, the last stable offset (below which every transaction is
// decided).
func stableEnd(client sarama.Client, topic string, partition int32) (int64, error) {
	if client.Config().Consumer.IsolationLevel != sarama.ReadCommitted {
		return client.GetOffset(topic, partition, sarama.OffsetNewest)
	}
	broker, err := client.Leader(topic, partition)
	if err != nil {
		return 0, err
	}
	req := sarama.NewOffsetRequest(client.Config().Version)
	req.IsolationLevel = sarama.ReadCommitted
	req.AddBlock(topic, partition, sarama.OffsetNewest, 1)
	resp, err := broker.GetAvailableOffsets(req)
	if err != nil {
		return 0, err
	}
	b := resp.GetBlock(topic, partition)
	switch {
	case b == nil:
		return 0, sarama.ErrIncompleteResponse
	case b.Err != sarama.ErrNoError:
		return 0, b.Err
	case req.Version >= 1:
		return b.Offset, nil
	case len(b.Offsets) == 1:
		return b.Offsets[0], nil
	}
	return 0, sarama.ErrIncompleteResponse
}

// DataEnd returns the offset after the last record in [from, until) of
// topic/partition that a consumer at the client's isolation level is
// given, or from if there is none. Transaction markers, and read
// committed the records of aborted transactions, take offsets but are
// never delivered: a reader that waits for the record at until-1 waits
// for ever when that offset is a marker, so it waits for the one before
// DataEnd instead.
//
// It reads the range's tail with plain fetches, from a few offsets
// before until and further back only while the part read holds no such
// record.
func DataEnd(client sarama.Client, topic string, partition int32, from, until int64) (int64, error) {
	for back := int64(64); ; back *= 16 {
		lo := max(from, until-back)
		last, err := lastDelivered(client, topic, partition, lo, until)
		if err != nil {
			return 0, fmt.Errorf("find the last record of %s/%d below %d: %w", topic, partition, until, err)
		}
		if last >= 0 {
			return last + 1, nil
		}
		if lo == from {
			return from, nil
		}
	}
}

// lastDelivered returns the offset of the last record in [lo, until) a
// consumer is given, or -1.
func lastDelivered(client sarama.Client, topic string, partition int32, lo, until int64) (int64, error) {
	iso := client.Config().Consumer.IsolationLevel
	last := int64(-1)
	aborted := map[int64]bool{} // producers whose records are in an aborted transaction here
	for off := lo; off < until; {
		broker, err := client.Leader(topic, partition)
		if err != nil {
			return 0, err
		}
		req := &sarama.FetchRequest{Version: 11, MaxWaitTime: 0, MinBytes: 0, MaxBytes: 1 << 20, Isolation: iso, SessionID: 0, SessionEpoch: -1}
		req.AddBlock(topic, partition, off, 1<<20, -1)
		resp, err := broker.Fetch(req)
		if err != nil {
			return 0, err
		}
		b := resp.GetBlock(topic, partition)
		if b == nil {
			return 0, sarama.ErrIncompleteResponse
		}
		if b.Err != sarama.ErrNoError {
			return 0, b.Err
		}
		txns := append([]*sarama.AbortedTransaction(nil), b.AbortedTransactions...)
		sort.Slice(txns, func(i, j int) bool { return txns[i].FirstOffset < txns[j].FirstOffset })
		moved := false
		for _, rs := range b.RecordsSet {
			batch := rs.RecordBatch
			if batch == nil {
				if rs.MsgSet != nil { // a legacy message set: no transactions
					for _, m := range rs.MsgSet.Messages {
						if m.Offset >= lo && m.Offset < until {
							last = max(last, m.Offset)
						}
						if m.Offset+1 > off {
							off, moved = m.Offset+1, true
						}
					}
				}
				continue
			}
			end := batch.FirstOffset + int64(batch.LastOffsetDelta)
			for len(txns) > 0 && txns[0].FirstOffset <= end {
				aborted[txns[0].ProducerID] = true
				txns = txns[1:]
			}
			switch {
			case batch.Control:
				if len(batch.Records) > 0 && isAbortMarker(batch.Records[0].Key) {
					delete(aborted, batch.ProducerID)
				}
			case iso == sarama.ReadCommitted && batch.IsTransactional && aborted[batch.ProducerID]:
			default:
				for _, r := range batch.Records {
					if o := batch.FirstOffset + r.OffsetDelta; o >= lo && o < until {
						last = max(last, o)
					}
				}
			}
			if end+1 > off {
				off, moved = end+1, true
			}
		}
		if !moved {
			break // nothing more is readable below until (read committed: the last stable offset)
		}
	}
	return last, nil
}

// isAbortMarker reports whether a control record's key says abort: a
// version and a type, both int16, type 0 aborting and 1 committing.
func isAbortMarker(key []byte) bool {
	return len(key) >= 4 && binary.BigEndian.Uint16(key[2:4]) == 0
}
