#!/usr/bin/env bash
# Starts a dev broker and three wordcount nodes on this machine, with a
# generator on the first, and prints where to look. Kill a node (its pid is
# printed) and watch its partitions move: curl any node's /cluster.
# Stop everything with Ctrl-C.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
RUN_DIR=${RUN_DIR:-./.run/cluster}
RATE=${WORDCOUNT_RATE:-20}
mkdir -p "$RUN_DIR"
go build -o "$RUN_DIR/mephisto" ./cmd/mephisto
go build -o "$RUN_DIR/wordcount" ./examples/wordcount

pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

"$RUN_DIR/mephisto" broker --listen 127.0.0.1:9092 --data-dir "$RUN_DIR/broker" 2>"$RUN_DIR/broker.log" &
pids+=($!)
for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/9092) 2>/dev/null && break; sleep 0.1; done

for i in 1 2 3; do
  rate=0; [ "$i" = 1 ] && rate=$RATE
  WORDCOUNT_RATE=$rate "$RUN_DIR/wordcount" worker --brokers 127.0.0.1:9092 \
    --node-id "n$i" --web "127.0.0.1:606$((5 + i))" --gossip "127.0.0.1:794$((5 + i))" --join 127.0.0.1:7946 \
    --data-dir "$RUN_DIR/n$i" 2>"$RUN_DIR/n$i.log" &
  pids+=($!)
  echo "node n$i: pid $! http://127.0.0.1:606$((5 + i))  (log $RUN_DIR/n$i.log)"
done
cat <<MSG

  curl -s 127.0.0.1:6066/cluster          # who is active and standby for what
  curl -s 127.0.0.1:6067/tables/word_counts/the   # any node answers any key
  kill -9 <pid of a node>                 # watch the survivors take over
  tail -f $RUN_DIR/n*.log

Ctrl-C stops everything.
MSG
wait
