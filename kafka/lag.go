package kafka

import (
	"errors"
	"fmt"

	"github.com/IBM/sarama"
)

// GroupLag returns, per partition index summed over topics (topic →
// partition count), the records beyond group's committed offsets; a
// partition whose end cannot be read counts nothing, and so does every
// partition when the offsets cannot be listed. It asks one request for the
// committed offsets and one per partition leader for the ends (GET /cluster
// calls it: one request per partition made that page take a second).
func GroupLag(admin sarama.ClusterAdmin, client sarama.Client, group string, topics map[string]int32) map[int32]int64 {
	lags := map[int32]int64{}
	committed := map[string][]int32{}
	for t, n := range topics {
		for p := int32(0); p < n; p++ {
			committed[t] = append(committed[t], p)
		}
	}
	resp, err := admin.ListConsumerGroupOffsets(group, committed)
	if err != nil {
		return lags
	}
	ends := EndOffsets(client, committed)
	for t, ps := range committed {
		for _, p := range ps {
			hwm, ok := ends[t][p]
			if !ok {
				continue
			}
			off := int64(0)
			if b := resp.GetBlock(t, p); b != nil && b.Offset >= 0 {
				off = b.Offset
			}
			lags[p] += max(0, hwm-off)
		}
	}
	return lags
}

// EndOffsets returns the high watermark of each partition of parts (topic
// → partitions), asking each partition's leader once for all of its
// partitions; a partition whose end cannot be read is missing from the
// answer.
func EndOffsets(client sarama.Client, parts map[string][]int32) map[string]map[int32]int64 {
	type tp struct {
		topic string
		p     int32
	}
	byLeader := map[*sarama.Broker][]tp{}
	for t, ps := range parts {
		for _, p := range ps {
			if b, err := client.Leader(t, p); err == nil {
				byLeader[b] = append(byLeader[b], tp{t, p})
			}
		}
	}
	out := map[string]map[int32]int64{}
	for b, tps := range byLeader {
		req := &sarama.OffsetRequest{Version: 1}
		for _, x := range tps {
			req.AddBlock(x.topic, x.p, sarama.OffsetNewest, 1)
		}
		resp, err := b.GetAvailableOffsets(req)
		if err != nil {
			continue
		}
		for _, x := range tps {
			blk := resp.GetBlock(x.topic, x.p)
			if blk == nil || !errors.Is(blk.Err, sarama.ErrNoError) {
				continue
			}
			if out[x.topic] == nil {
				out[x.topic] = map[int32]int64{}
			}
			out[x.topic][x.p] = blk.Offset
		}
	}
	return out
}

// CommittedOffsets returns group's committed offset (the next to read) of
// partition p of each topic that has one.
func CommittedOffsets(admin sarama.ClusterAdmin, group string, topics []string, p int32) (map[string]int64, error) {
	parts := make(map[string][]int32, len(topics))
	for _, t := range topics {
		parts[t] = []int32{p}
	}
	resp, err := admin.ListConsumerGroupOffsets(group, parts)
	if err != nil {
		return nil, err
	}
	if resp.Err != sarama.ErrNoError {
		return nil, resp.Err
	}
	next := map[string]int64{}
	for _, t := range topics {
		b := resp.GetBlock(t, p)
		if b == nil {
			continue
		}
		if b.Err != sarama.ErrNoError {
			return nil, fmt.Errorf("%s/%d: %w", t, p, b.Err)
		}
		if b.Offset >= 0 {
			next[t] = b.Offset
		}
	}
	return next, nil
}
