"""SIGTERM drains the running flow (sources stop, sinks flush) and the process exits 0."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time

import pytest
import redis

pytestmark = pytest.mark.slow


def test_sigterm_drains_the_demo_and_exits_0() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "LLM_", "WS_", "POLL_"))}
    proc = subprocess.Popen([sys.executable, "-m", "polyalphascan.cli", "demo", "--events", "40"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()  # type: ignore[union-attr]
    try:
        url = None
        deadline = time.monotonic() + 60
        while url is None and time.monotonic() < deadline:
            try:
                m = re.search(r"redis: (redis://\S+)", lines.get(timeout=1))
            except queue.Empty:
                continue
            url = m.group(1) if m else None
        assert url, "the demo did not print its Redis URL"
        client = redis.Redis.from_url(url)
        while time.monotonic() < deadline and client.zcard("pas:v1:ranking") == 0:
            time.sleep(0.1)
        assert client.zcard("pas:v1:ranking") > 0, "no portfolio reached Redis"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        out = []
        while not lines.empty():
            out.append(lines.get())
        assert any("stopped:" in line for line in out)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
