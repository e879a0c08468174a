"""Graceful stop for a long-lived flow.

Bytewax has no graceful stop on a signal (issue #268): SIGINT aborts, SIGTERM kills. The
pattern validated in research/bytewax.md §6.4: a signal handler sets `STOP`, every source
partition raises `StopIteration` once it is set, and the dataflow drains — async
operators flush in `on_eof`, sinks `close()`, sources snapshot at EOF — and exits 0.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

from polyalphascan.logs import get_logger

log = get_logger(__name__)

#: Set when the flow should drain and stop. Sources check it in `next_batch`.
STOP = threading.Event()


def request_stop(reason: str = "requested") -> None:
    if not STOP.is_set():
        log.info("stop_requested", reason=reason)
    STOP.set()


def _on_signal(signum: int, _frame: FrameType | None) -> None:
    name = signal.Signals(signum).name
    if STOP.is_set() and signum == signal.SIGINT:
        # second Ctrl-C: the user wants out now
        raise KeyboardInterrupt
    request_stop(name)


def install_signal_handlers() -> None:
    """SIGTERM and SIGINT drain the flow (a second SIGINT aborts). Main thread only."""
    if threading.current_thread() is not threading.main_thread():
        return
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)


def reset() -> None:
    """For tests that run several flows in one process."""
    STOP.clear()
