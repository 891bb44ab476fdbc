"""The Faust peer of Mephisto's benchmark workloads.

The harness (bench/harness/faust.go) runs it as a separate process in a
virtual environment made from requirements.txt and reads the JSON lines it
prints on stdout, one per event:

    {"event":"config",...}                        the settings, at start
    {"event":"running","time_ns":T,"cpu_ns":C}    the first rebalance completed
                                                  (partitions assigned, tables
                                                  recovered): consuming starts

time_ns is the wall clock in nanoseconds since the Unix epoch, cpu_ns the
process's CPU time so far. The harness times the run from "running" to the
moment the consumer group (the app id) has committed the input's high
watermarks, the same end as Mephisto's, and checks the result itself in
Kafka (the changelog or the output topic).

Modes (BENCH_MODE):

    count  topic in (raw key, raw value) -> agent -> Table "counts" (+1 per
           event; Faust sends a changelog record per update)
    pass   topic in -> agent -> topic out (same key, value upper-cased)

Settings (environment): BENCH_APP (the app id: consumer group and
changelog prefix), BENCH_BROKER (host:port), BENCH_IN, BENCH_OUT,
BENCH_DATA_DIR, BENCH_STORE ("rocksdb://" or "memory://"),
BENCH_COMMIT_INTERVAL (seconds; Faust's broker_commit_interval).
"""

import json
import os
import sys
import time

import faust


def emit(event, **fields):
    """Print one JSON line: the event, the time and the CPU time so far."""
    line = {"event": event, "time_ns": time.time_ns(), "cpu_ns": time.process_time_ns()}
    line.update(fields)
    # Straight to file descriptor 1: a Faust worker replaces sys.stdout
    # with its logger.
    os.write(1, (json.dumps(line) + "\n").encode())


def env(name, default=None):
    value = os.environ.get(name, "")
    if value:
        return value
    if default is None:
        sys.exit(f"bench faust: {name} is required")
    return default


mode = env("BENCH_MODE")
app_id = env("BENCH_APP")
commit_interval = float(env("BENCH_COMMIT_INTERVAL", "0.5"))
store = env("BENCH_STORE", "rocksdb://")

app = faust.App(
    app_id,
    broker="kafka://" + env("BENCH_BROKER"),
    store=store,
    datadir=env("BENCH_DATA_DIR"),
    topic_partitions=8,
    topic_replication_factor=1,
    broker_commit_interval=commit_interval,
    processing_guarantee="at_least_once",
    web_enabled=False,
    # Faust's own defaults, spelled out: keys raw, values JSON (the
    # table's changelog values are JSON numbers).
    key_serializer="raw",
    value_serializer="json",
)

source = app.topic(env("BENCH_IN", "in"), key_type=bytes, value_type=bytes, value_serializer="raw", partitions=8)

if mode == "count":
    counts = app.Table("counts", default=int, key_type=bytes, value_type=int, partitions=8)

    @app.agent(source)
    async def count(stream):
        async for key, _ in stream.items():
            counts[key] += 1

elif mode == "pass":
    sink = app.topic(env("BENCH_OUT", "out"), key_type=bytes, value_type=bytes, value_serializer="raw", partitions=8)

    @app.agent(source)
    async def passthrough(stream):
        async for key, value in stream.items():
            await sink.send(key=key, value=value.upper())

else:
    sys.exit(f"bench faust: BENCH_MODE {mode!r}: want count or pass")

_running = False


@app.on_rebalance_complete.connect
async def _on_rebalance_complete(sender, **kwargs):
    global _running
    if not _running:
        _running = True
        emit("running")


if __name__ == "__main__":
    emit("config", mode=mode, app_id=app_id, store=store, commit_interval=commit_interval,
         commit_every=app.conf.broker_commit_every, guarantee=str(app.conf.processing_guarantee),
         faust=faust.__version__)
    app.main()
