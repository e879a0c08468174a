"""What one running flow owns: its stop signal and its metrics.

Every source, sink and background thread of a flow is handed these explicitly (never a
module-level global), so two flows in one process (tests, benchmarks) stop and count apart.
The runtime creates one `FlowScope` per process run and installs the signal handlers on it.
"""

from __future__ import annotations

import signal
import threading
from dataclasses import dataclass, field
from types import FrameType

from polyalphascan.logs import get_logger
from polyalphascan.metrics import MetricsRegistry

log = get_logger(__name__)


@dataclass
class FlowScope:
    #: Set when the flow should drain and stop: sources end their partitions (StopIteration),
    #: async operators flush in `on_eof`, sinks close, and the dataflow exits 0.
    stop: threading.Event = field(default_factory=threading.Event)
    metrics: MetricsRegistry = field(default_factory=MetricsRegistry)

    def request_stop(self, reason: str = "requested") -> None:
        if not self.stop.is_set():
            log.info("stop_requested", reason=reason)
        self.stop.set()

    def install_signal_handlers(self) -> None:
        """SIGTERM and SIGINT drain the flow (Bytewax itself aborts on SIGINT and dies on
        SIGTERM); a second SIGINT aborts at once. Main thread only."""
        if threading.current_thread() is not threading.main_thread():
            return

        def on_signal(signum: int, _frame: FrameType | None) -> None:
            if self.stop.is_set() and signum == signal.SIGINT:
                raise KeyboardInterrupt  # second Ctrl-C: the user wants out now
            self.request_stop(signal.Signals(signum).name)

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
