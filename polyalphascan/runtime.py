"""Process start-up for the flow: settings, logging, signals, Redis, metrics, recovery."""

from __future__ import annotations

import gc
from datetime import timedelta
from pathlib import Path

from bytewax.dataflow import Dataflow
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.testing import cluster_main, run_main

from connectors.portfolio_sink import MetricsWriter
from connectors.redis_server import EmbeddedRedis
from polyalphascan.lifecycle import install_signal_handlers
from polyalphascan.logs import configure_logging, get_logger
from polyalphascan.settings import Settings, get_settings

log = get_logger(__name__)

_embedded: EmbeddedRedis | None = None
_metrics_writer: MetricsWriter | None = None


def resolve_redis_url(settings: Settings) -> str:
    """The Redis URL to use; 'embedded' starts a local redis-server once per process."""
    global _embedded
    if not settings.embedded_redis:
        return settings.redis_url
    if _embedded is None:
        _embedded = EmbeddedRedis().start()
        log.warning(
            "embedded_redis_in_use",
            url=_embedded.url,
            detail="data lives only as long as this process; set REDIS_URL for several processes",
        )
    return _embedded.url


def start_metrics_writer(settings: Settings, redis_url: str) -> MetricsWriter:
    global _metrics_writer
    if _metrics_writer is None:
        _metrics_writer = MetricsWriter(redis_url, settings.redis_key_prefix).start()
    return _metrics_writer


def stop_metrics_writer() -> None:
    global _metrics_writer
    if _metrics_writer is not None:
        _metrics_writer.stop()
        _metrics_writer = None


def tune_gc() -> None:
    """The flow keeps hundreds of thousands of small, long-lived records in keyed state; with
    the default thresholds the cyclic GC rescans all of them again and again, so the cost of
    a price update grows with the number of portfolios. Collect rarely instead (the state
    holds no reference cycles worth collecting quickly)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(200_000, 50, 100)


def prepare_process(settings: Settings | None = None) -> tuple[Settings, str]:
    """Everything a process needs before the flow is built (used by `bytewax.run` too)."""
    settings = settings or get_settings()
    tune_gc()
    configure_logging(settings.log_level, settings.log_format)
    install_signal_handlers()
    redis_url = resolve_redis_url(settings)
    start_metrics_writer(settings, redis_url)
    return settings, redis_url


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


def run_flow(flow: Dataflow, settings: Settings, *, workers: int = 1, max_workers: int | None = None) -> None:
    """Run `flow` in this process with `workers` worker threads until it drains."""
    epoch = timedelta(seconds=settings.snapshot_interval_seconds)
    recovery = recovery_config(settings.recovery_dir, max(workers, max_workers or workers))
    try:
        if workers == 1:
            run_main(flow, epoch_interval=epoch, recovery_config=recovery)
        else:
            cluster_main(flow, [], 0, epoch_interval=epoch, recovery_config=recovery, worker_count_per_proc=workers)
    finally:
        stop_metrics_writer()
