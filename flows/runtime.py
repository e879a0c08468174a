"""Process start-up for the flow: settings, logging, signals, Redis, metrics, recovery."""

from __future__ import annotations

import gc
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from bytewax.dataflow import Dataflow
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.testing import cluster_main, run_main

from connectors.redis.history import HistoryRecorder
from connectors.redis.metrics_writer import MetricsWriter
from connectors.redis.server import EmbeddedRedis
from polyalphascan.logs import configure_logging, get_logger
from polyalphascan.scope import FlowScope
from polyalphascan.settings import Settings, get_settings

log = get_logger(__name__)


@dataclass
class ProcessRuntime:
    """What one process running the flow owns: settings, the Redis it writes, the flow's
    scope (stop signal, metrics), an embedded redis-server if asked for, the metrics writer.
    Nothing of it is module-level state: `close()` releases it all."""

    settings: Settings
    redis_url: str
    scope: FlowScope
    embedded: EmbeddedRedis | None = None
    metrics_writer: MetricsWriter | None = None
    history: HistoryRecorder | None = None

    def close(self) -> None:
        if self.history is not None:
            self.history.stop()
            self.history = None
        if self.metrics_writer is not None:
            self.metrics_writer.stop()
            self.metrics_writer = None
        if self.embedded is not None:
            self.embedded.stop()
            self.embedded = None


def tune_gc() -> None:
    """The flow keeps hundreds of thousands of small, long-lived records in keyed state; with
    the default thresholds the cyclic GC rescans all of them again and again, so the cost of
    a price update grows with the number of portfolios. Collect rarely instead (the state
    holds no reference cycles worth collecting quickly)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(200_000, 50, 100)


def start_runtime(settings: Settings | None = None, *, signals: bool = True) -> ProcessRuntime:
    """Everything a process needs before the flow is built (used by `bytewax.run` too):
    GC tuning, logging, signal handlers on a new scope, Redis ("embedded" starts a private
    redis-server), and the metrics writer."""
    settings = settings or get_settings()
    tune_gc()
    configure_logging(settings.log_level, settings.log_format)
    scope = FlowScope()
    if signals:
        scope.install_signal_handlers()
    embedded = None
    redis_url = settings.redis_url
    if settings.embedded_redis:
        embedded = EmbeddedRedis().start()
        redis_url = embedded.url
        log.warning("embedded_redis_in_use", url=embedded.safe_url,
                    detail="data lives only as long as this process; set REDIS_URL for several processes")
    writer = MetricsWriter(redis_url, settings.redis_key_prefix, scope.metrics).start()
    history = start_history(settings, redis_url, scope)
    return ProcessRuntime(settings, redis_url, scope, embedded, writer, history)


def start_history(settings: Settings, redis_url: str, scope: FlowScope) -> HistoryRecorder | None:
    """The opportunity history recorder (issue 18): it runs with every scanner process (one
    active per cluster, by lease), so the history has no gap while the scanner writes."""
    if not settings.history_enabled:
        return None
    return HistoryRecorder(redis_url, settings.redis_key_prefix, scope.metrics.group("history"),
                           retention_s=settings.history_retention_hours * 3600,
                           window_s=settings.history_window_minutes * 60).start()


def recovery_config(directory: str | None, max_workers: int) -> RecoveryConfig | None:
    """A recovery config for `directory`, initialised with `max_workers` partitions if new."""
    if not directory:
        return None
    path = Path(directory)
    if not any(path.glob("part-*.sqlite3")):
        path.mkdir(parents=True, exist_ok=True)
        init_db_dir(path, max_workers)
        log.info("recovery_initialised", dir=str(path), partitions=max_workers)
    return RecoveryConfig(str(path))


def run_flow(flow: Dataflow, runtime: ProcessRuntime, *, workers: int = 1, max_workers: int | None = None) -> None:
    """Run `flow` in this process with `workers` worker threads until it drains, then release
    the runtime."""
    settings = runtime.settings
    epoch = timedelta(seconds=settings.snapshot_interval_seconds)
    recovery = recovery_config(settings.recovery_dir, max(workers, max_workers or workers))
    try:
        if workers == 1:
            run_main(flow, epoch_interval=epoch, recovery_config=recovery)
        else:
            cluster_main(flow, [], 0, epoch_interval=epoch, recovery_config=recovery, worker_count_per_proc=workers)
    finally:
        runtime.close()
