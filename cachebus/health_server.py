"""A tiny HTTP server for probes: ``/healthz`` (liveness), ``/readyz`` (readiness), ``/metrics``,
and pages for people (``/status``: see :mod:`cachebus.ops.status_page`).

Liveness is the consume loop's heartbeat, never Redis: a Redis outage must not make an
orchestrator restart every consumer. Readiness says whether invalidations are flowing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping

import orjson

from cachebus.consumers import Health

__all__ = ["HealthServer"]

MetricsFn = Callable[[], tuple[bytes, str]]
#: A page: its HTML body, rendered from what the process already holds (no I/O).
PageFn = Callable[[], bytes]


class HealthServer:
    """Probes of ``health`` (None: no probes, pages only), ``/metrics``, and ``pages`` by
    path (``{"/status": page.render}``)."""

    def __init__(
        self,
        health: Callable[[], Health] | None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        metrics: MetricsFn | None = None,
        pages: Mapping[str, PageFn] | None = None,
    ) -> None:
        self._health = health
        self._metrics = metrics
        self._pages = dict(pages or {})
        self.host = host
        self.port = port
        self._server: asyncio.Server | None = None

    async def start(self) -> HealthServer:
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readline(), timeout=5)
            while (await asyncio.wait_for(reader.readline(), timeout=5)) not in (
                b"\r\n",
                b"\n",
                b"",
            ):
                pass
            parts = request.decode("latin-1").split()
            path = parts[1].split("?")[0] if len(parts) >= 2 else "/"
            status, body, ctype = self._route(path)
            head = (
                f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            )
            writer.write(head.encode() + body)
            await writer.drain()
        except (TimeoutError, OSError, UnicodeDecodeError):  # a probe gave up
            pass
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    def _route(self, path: str) -> tuple[str, bytes, str]:
        page = self._pages.get(path)
        if page is not None:
            return ("200 OK", page(), "text/html; charset=utf-8")
        if self._health is None:
            return ("404 Not Found", b"not found\n", "text/plain")
        health = self._health()
        if path == "/healthz":
            body = orjson.dumps(
                {"live": health.live, "heartbeat_age_s": round(health.last_heartbeat_age_s, 3)}
            )
            return (
                "200 OK" if health.live else "503 Service Unavailable",
                body,
                "application/json",
            )
        if path == "/readyz":
            body = orjson.dumps(
                {
                    "ready": health.ready,
                    "reasons": list(health.reasons),
                    "lag": health.lag,
                    "pending": health.pending,
                }
            )
            return (
                "200 OK" if health.ready else "503 Service Unavailable",
                body,
                "application/json",
            )
        if path == "/metrics" and self._metrics is not None:
            body, ctype = self._metrics()
            return ("200 OK", body, ctype)
        return ("404 Not Found", b"not found\n", "text/plain")
