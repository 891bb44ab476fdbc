package mephistotest_test

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/mephistohq/mephisto/mephistotest"
)

// benchLines are 100,000 lines of 8 words from a 1,000-word vocabulary.
func benchLines() []string {
	rng := rand.New(rand.NewPCG(1, 2))
	lines := make([]string, 100_000)
	words := make([]string, 8)
	for i := range lines {
		for j := range words {
			words[j] = fmt.Sprint("w", rng.IntN(1000))
		}
		lines[i] = strings.Join(words, " ")
	}
	return lines
}

// BenchmarkDriverWordCount pipes 100,000 lines (800,000 words) through
// the README's word count on the test driver: Batch (one run to
// completion for all) and per line (a run, and a commit, per Pipe).
func BenchmarkDriverWordCount(b *testing.B) {
	lines := benchLines()
	for _, mode := range []string{"batch", "per-line"} {
		b.Run(mode, func(b *testing.B) {
			for b.Loop() {
				w := newWordCount()
				d := mephistotest.New(b, w.app)
				pipe := func() {
					for _, l := range lines {
						mephistotest.Pipe(d, w.lines, "", l)
					}
				}
				if mode == "batch" {
					d.Batch(pipe)
				} else {
					pipe()
				}
				if n, _ := w.counts.Get(d.Context(), "w1"); n == 0 {
					b.Fatal("w1 never counted")
				}
			}
			b.ReportMetric(float64(len(lines))*float64(b.N)/b.Elapsed().Seconds(), "lines/s")
			b.ReportMetric(8*float64(len(lines))*float64(b.N)/b.Elapsed().Seconds(), "words/s")
		})
	}
}
