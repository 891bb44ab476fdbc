package kafka

import "github.com/IBM/sarama"

// GroupLag returns, per partition index summed over topics (topic →
// partition count), the records beyond group's committed offsets; a
// partition whose end cannot be read counts nothing, and so does every
// partition when the offsets cannot be listed.
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
	for t, ps := range committed {
		for _, p := range ps {
			_, hwm, err := Bounds(client, t, p)
			if err != nil {
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
