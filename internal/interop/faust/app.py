"""The Faust side of the interoperability tests (internal/interop).

A Faust app next to the Mephisto test app, on shared topics: at start it
sends N JSON orders keyed by account to the orders topic with Faust's own
producer and partitioner (the Mephisto agent counts them per account
without repartitioning, so a key Faust puts on another partition than
Mephisto's partitioner would makes the totals wrong), and its agent reads
the JSON receipts the Mephisto agent sends back. Once it has a receipt for
every order it prints one JSON line on stdout:

    {"event": "done", "receipts": R, "orders": O, "totals": {account: total},
     "misplaced": M}

R counts the receipts read, O the distinct orders they answer, totals the
last total per account, M the receipts read from another partition than
the one they say Mephisto processed the order on.

Settings (environment): INTEROP_BROKER (host:port), INTEROP_APP (Faust's
app id), INTEROP_ORDERS, INTEROP_RECEIPTS (topic names), INTEROP_N.
"""

import json
import os

import faust

N = int(os.environ["INTEROP_N"])

app = faust.App(
    os.environ["INTEROP_APP"],
    broker="kafka://" + os.environ["INTEROP_BROKER"],
    store="memory://",
    web_enabled=False,
    topic_partitions=4,
    topic_replication_factor=1,
    consumer_auto_offset_reset="earliest",
)

orders = app.topic(os.environ["INTEROP_ORDERS"], key_type=bytes, key_serializer="raw",
                   value_serializer="json", partitions=4)
receipts = app.topic(os.environ["INTEROP_RECEIPTS"], key_type=bytes, key_serializer="raw",
                     value_serializer="json", partitions=4)

seen = set()
totals = {}
state = {"receipts": 0, "misplaced": 0, "done": False}


@app.task
async def send_orders():
    for i in range(N):
        account = "acct-%d" % (i % 37)
        await orders.send(key=account.encode(), value={"id": i, "account": account, "amount": i % 10 + 1})


@app.agent(receipts)
async def read_receipts(stream):
    async for event in stream.events():
        r = event.value
        state["receipts"] += 1
        if event.message.partition != r["partition"] or event.key != r["account"].encode():
            state["misplaced"] += 1
        seen.add(r["order"])
        totals[r["account"]] = max(totals.get(r["account"], 0), r["total"])
        if len(seen) == N and not state["done"]:
            state["done"] = True
            line = {"event": "done", "receipts": state["receipts"], "orders": len(seen),
                    "totals": totals, "misplaced": state["misplaced"]}
            # Straight to file descriptor 1: a Faust worker replaces
            # sys.stdout with its logger.
            os.write(1, (json.dumps(line) + "\n").encode())


if __name__ == "__main__":
    app.main()
