"""Bounded waiting for a condition in tests (never a sleep as synchronisation: the condition is
polled until it holds, and the test fails when it does not within `timeout`)."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_for(cond: Callable[[], bool], timeout: float = 10.0, what: str = "", every: float = 0.01) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what or 'the condition'}")


async def wait_for_async(cond: Callable[[], bool], timeout: float = 10.0, what: str = "", every: float = 0.01) -> None:
    """`wait_for` inside an event loop: polls without blocking the loop's other tasks."""
    import asyncio

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        await asyncio.sleep(every)
    raise AssertionError(f"timed out waiting for {what or 'the condition'}")
