"""The price source: a Bytewax `FixedPartitionedSource` with one partition per CLOB websocket shard.

Partitions are fixed slots `ws-00 … ws-{N-1}` (N = `max_connections`; Bytewax spreads them
over all workers and processes). Each partition owns one `ShardClient` (its socket in a
background thread) reading its slot's tokens from the Redis token registry, and only moves
what the client buffered into the flow: `next_batch` swaps the buffer out (never blocks),
`next_awake` is `IDLE_POLL_S` (5 ms) ahead when the last batch was empty: a price that lands
just after an empty poll waits at most that long (20 ms made half the frame-to-Redis latency
of a quiet feed; 5 ms costs a few hundred empty polls a second per shard when idle). The snapshot is None: a live feed
cannot be replayed, and on resume every shard resyncs from fresh `book` snapshots.

The source object owns its clients (those built in this process) and, about once a second
per partition, publishes to its `ws` metric group each shard's counters and rates
(`shard{NN}_*`) and the totals `connections` / `subscriptions`. Setting `stop` ends every
partition (`StopIteration`) and closes its socket.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone

import redis
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from connectors.clob.client import ShardClient
from connectors.redis.token_registry import TokenRegistry
from polyalphascan.metrics import MetricGroup
from polyalphascan.records import PriceUpdate


#: how long a partition waits after an empty poll before polling again
IDLE_POLL_S = 0.005


class ShardPartition(StatefulSourcePartition[PriceUpdate, None]):
    def __init__(self, source: PriceShardSource, client: ShardClient) -> None:
        self.source = source
        self.client = client
        self._empty = False
        self._last_report = 0.0
        self._last_counts = (0, 0, time.monotonic())

    def next_batch(self) -> list[PriceUpdate]:
        if self.source.stop.is_set():
            self.client.stop()
            raise StopIteration
        out = self.client.drain()
        self._empty = not out
        now = time.monotonic()
        if now - self._last_report > 1.0:
            self._last_report = now
            self._report(now)
        return out

    def _report(self, now: float) -> None:
        client, m = self.client, self.source.metrics
        client.report()
        m0, u0, t0 = self._last_counts
        dt = max(now - t0, 1e-6)
        p = f"shard{client.shard:02d}_"
        m.set(p + "messages_per_s", round((client.messages - m0) / dt, 1))
        m.set(p + "updates_per_s", round((client.updates - u0) / dt, 1))
        self._last_counts = (client.messages, client.updates, now)
        self.source.publish_totals()

    def next_awake(self) -> datetime | None:
        return datetime.now(timezone.utc) + timedelta(seconds=IDLE_POLL_S) if self._empty else None

    def snapshot(self) -> None:
        return None

    def close(self) -> None:
        self.client.stop()


class PriceShardSource(FixedPartitionedSource[PriceUpdate, None]):
    """`PriceUpdate`s from the CLOB market channel, one partition per shard.

    ws_url: the market-channel websocket URL. redis_url / key_prefix: where the token
    registry lives (each partition opens its own Redis client). max_connections: the number
    of shards (partitions); tokens_per_connection: the registry's shard size. queue_max: the
    bound on a shard's coalescing buffer (only counted when exceeded, never dropped).
    ping_interval / stall_timeout: heartbeat and data watchdog (s). refresh_interval: how often
    a shard checks the registry version (s); stagger: connect delay per shard index (s);
    backoff_base / backoff_max: reconnect backoff (s). stop: ends the partitions when set.
    metrics: the `ws` metric group."""

    def __init__(self, ws_url: str, redis_url: str, *, key_prefix: str, max_connections: int,
                 tokens_per_connection: int, queue_max: int, ping_interval: float, stall_timeout: float,
                 stop: threading.Event, metrics: MetricGroup, refresh_interval: float = 0.5, stagger: float = 0.2,
                 backoff_base: float = 2.0, backoff_max: float = 60.0) -> None:
        self.ws_url = ws_url
        self.redis_url = redis_url
        self.key_prefix = key_prefix
        self.max_connections = max_connections
        self.tokens_per_connection = tokens_per_connection
        self.queue_max = queue_max
        self.ping_interval = ping_interval
        self.stall_timeout = stall_timeout
        self.stop = stop
        self.metrics = metrics
        self.refresh_interval = refresh_interval
        self.stagger = stagger
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        #: The shard clients built in this process (by any of its workers), by shard.
        self.clients: dict[int, ShardClient] = {}
        self._clients_lock = threading.Lock()

    def list_parts(self) -> list[str]:
        return [f"ws-{i:02d}" for i in range(self.max_connections)]

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> ShardPartition:
        shard = int(for_part.split("-")[1])
        registry = TokenRegistry(redis.Redis.from_url(self.redis_url, socket_timeout=5), self.key_prefix,
                                 self.max_connections, self.tokens_per_connection)
        client = ShardClient(shard, self.ws_url, registry, metrics=self.metrics, ping_interval=self.ping_interval,
                             stall_timeout=self.stall_timeout, backoff_base=self.backoff_base,
                             backoff_max=self.backoff_max, refresh_interval=self.refresh_interval,
                             stagger=self.stagger, queue_max=self.queue_max)
        with self._clients_lock:
            self.clients[shard] = client
        return ShardPartition(self, client)

    def publish_totals(self) -> None:
        """`connections` and `subscriptions` over this process's shards."""
        with self._clients_lock:
            clients = list(self.clients.values())
        self.metrics.set("connections", sum(1 for c in clients if c.connected))
        self.metrics.set("subscriptions", sum(len(c.subscribed) for c in clients if c.connected))
        try:
            cov = [c.coverage() for c in clients]
        except RuntimeError:
            return
        subscribed, booked = sum(s for s, _ in cov), sum(b for _, b in cov)
        self.metrics.set("tokens_subscribed", subscribed)
        self.metrics.set("tokens_booked", booked)
