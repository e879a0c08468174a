"""Health of the background threads of the Redis layer (write-behind writers, metrics writer).

A thread is *healthy* while it runs, and after it stopped because it was asked to
(`close`/`stop`); it is unhealthy once it stopped on an uncaught exception (its work is no
longer written). Each owner reports its own `thread_health()` and keeps a `<name>_alive`
gauge (1/0) in its metric group, so the state reaches the metrics hash in Redis and the
monitoring JSON's `health` section (no process-wide registry: two flows in one process
report apart).
"""

from __future__ import annotations


def alive_gauge(name: str) -> str:
    """`portfolio-writer` -> `portfolio_writer_alive`."""
    return name.replace("-", "_").replace(".", "_") + "_alive"
