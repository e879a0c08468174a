"""An aiohttp application served from a daemon thread with its own event loop.

Shared by the Gamma and OpenAI-compatible stand-ins and the monitoring endpoint:
`start()` returns once listening (port 0 = a free port), `.url`, `stop()`, context manager.
"""

from __future__ import annotations

import asyncio
import threading

from aiohttp import web


class ThreadedHttpServer:
    name = "http"

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=self.name, daemon=True)
        self._runner: web.AppRunner | None = None

    def make_app(self) -> web.Application:  # pragma: no cover - every subclass defines it
        raise NotImplementedError

    async def _start(self) -> None:
        self._runner = web.AppRunner(self.make_app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        server = site._server  # noqa: SLF001 - aiohttp exposes no public accessor for the bound port
        if server is not None and server.sockets:
            self.port = server.sockets[0].getsockname()[1]

    def start(self) -> "ThreadedHttpServer":
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
            self._runner = None
        if self._loop.is_running():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)

    def __enter__(self):  # noqa: ANN204 - returns the subclass
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
