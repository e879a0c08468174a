"""The event loop the LLM requests run on: an asyncio loop in a daemon thread, at most
`limit` coroutines at a time.

Bytewax calls the LLM step's logic on its worker thread, which must never wait for the
network. The step submits coroutines here (`submit` returns a `concurrent.futures.Future`
at once) and picks finished futures up later; a semaphore keeps at most `limit` requests in
flight, and the gauge `in_flight` of the given metric group follows them.

Whoever creates a runner owns it and stops it (`stop()`, or use it as a context manager):
stopping cancels what is still running, runs an optional async clean-up on the loop (e.g.
closing the HTTP client), stops the loop and joins the thread. There is no shared or
per-process instance.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import Future
from types import TracebackType
from typing import Any

from polyalphascan.metrics import MetricGroup


class RunnerStopped(RuntimeError):
    """`submit` on a runner that was stopped."""


class AsyncRunner:
    """An asyncio loop in its own daemon thread, running at most `limit` submitted coroutines
    at once. Started by the constructor, ended by `stop()` (idempotent)."""

    def __init__(self, limit: int, metrics: MetricGroup | None = None, name: str = "llm-runner") -> None:
        self.limit = limit
        self.metrics = metrics
        self.in_flight = 0
        self._stopped = False
        self._lock = threading.Lock()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self.thread.start()

        async def make() -> asyncio.Semaphore:
            return asyncio.Semaphore(limit)

        self.sem = asyncio.run_coroutine_threadsafe(make(), self.loop).result()

    def _gauge(self) -> None:
        if self.metrics is not None:
            self.metrics.set("in_flight", self.in_flight)

    def submit(self, make: Callable[[], Coroutine[Any, Any, Any]]) -> Future[Any]:
        """Run `make()` on the loop once a slot is free; the future resolves with its result."""

        async def guarded() -> Any:
            async with self.sem:
                self.in_flight += 1
                self._gauge()
                try:
                    return await make()
                finally:
                    self.in_flight -= 1
                    self._gauge()

        with self._lock:
            if self._stopped:
                raise RunnerStopped("the runner was stopped")
            return asyncio.run_coroutine_threadsafe(guarded(), self.loop)

    def stop(self, cleanup: Callable[[], Awaitable[Any]] | None = None, timeout: float = 5.0) -> None:
        """Cancel every running coroutine, await `cleanup()` on the loop, then end the loop
        and its thread. Safe to call more than once."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True

        async def shutdown() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if cleanup is not None:
                await cleanup()

        try:
            asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(timeout)
        except Exception:  # noqa: BLE001 - a clean-up that fails or hangs must not keep the loop alive
            pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=timeout)
        if not self.thread.is_alive():
            self.loop.close()

    def __enter__(self) -> AsyncRunner:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
