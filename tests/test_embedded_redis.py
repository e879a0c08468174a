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
