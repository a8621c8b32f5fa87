"""The status page on the sidecar's health port, and ``cachebus status --serve``, rendered by a
real browser (headless Chromium): groups, members, lag and pending, the flush timeline with
reasons, dead letters, and the last minutes' throughput and latency plots."""

from __future__ import annotations

import asyncio
import signal
import struct
import subprocess
import sys
import urllib.request
from html.parser import HTMLParser
from pathlib import Path

import pytest
import redis.asyncio
from typer.testing import CliRunner

from cachebus.cli import app
from cachebus.contracts.codec import FIELD
from cachebus.contracts.keys import StreamKeys
from cachebus.service import ConsumerService
from cachebus.testing import RedisServer, eventually
from cachebus.testing.server import free_port
from tests.consumer.helpers import keys_event, publish
from tests.harness.registry import REGISTRY, REGISTRY_FILE
from tests.obs.chromium import chromium, run_chromium

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "page"
FAST: dict[str, object] = {"prefix": PREFIX, "block_ms": 100, "traces": False, "metrics": False}


class _Tables(HTMLParser):
    """The text of each table of the rendered DOM, by id; and how many plots it drew."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, str] = {}
        self._table: str | None = None
        self.svgs = 0
        self.peaks: list[float] = []
        self.lines = 0
        self.refresh: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = dict(attrs)
        if tag == "table":
            self._table = named.get("id") or "?"
            self.tables[self._table] = ""
        elif tag == "svg":
            self.svgs += 1
            self.peaks.append(float(named.get("data-peak") or 0))
        elif tag in ("polyline", "circle"):
            self.lines += 1
        elif tag == "meta" and named.get("http-equiv") == "refresh":
            self.refresh = named.get("content")

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        if self._table is not None:
            self.tables[self._table] += data + " "


def _png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    width, height = struct.unpack(">II", header[16:24])
    return width, height


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as reply:
        return str(reply.read().decode())


async def test_the_sidecars_status_page_shows_the_flush_and_its_reason_in_chromium(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    chromium()  # skips (or fails in CI) before anything is started, not halfway through
    # Given a running sidecar with a probe port
    port = free_port()
    service = ConsumerService.from_url(
        redis_server.url, registry=REGISTRY, service="bot",
        settings={**FAST, "health_port": port, "consumer": "bot-1"},
    )  # fmt: skip
    keys = StreamKeys(PREFIX)
    async with service, redis.asyncio.Redis.from_url(redis_server.url) as client:
        assert await service.wait_ready(30)
        # When invalidations flow, an operator flushes a namespace, and a poison entry arrives
        await publish(client, keys, [keys_event("prices", str(i)) for i in range(20)])
        flushed = await asyncio.to_thread(
            CliRunner().invoke, app,
            ["publish", "prices", "--flush", "--yes", "--reason", "feed restarted",
             "--redis-url", redis_server.url, "--prefix", PREFIX,
             "--registry", str(REGISTRY_FILE)],
        )  # fmt: skip
        assert flushed.exit_code == 0, flushed.output
        await client.xadd(keys.stream("inval"), {FIELD: b"this is not an event"})
        page_url = f"http://127.0.0.1:{port}/status"

        def page_has_everything() -> bool:
            html = _get(page_url)
            return (
                "poison" in html
                and "feed restarted" in html
                and "<table id=dead-letters>" in html
                and 'data-peak="0"' not in html  # both plots have data
            )

        await eventually(
            lambda: asyncio.to_thread(page_has_everything),
            within=20, what="the page shows the flushes and the dead letter",
        )  # fmt: skip
        # Then a browser renders the page: the flushes with their reasons, the dead letter,
        # the group and its member, two plots with data
        dom = await asyncio.to_thread(
            run_chromium, page_url, "--dump-dom", profile=tmp_path / "profile-dom"
        )
        shot = tmp_path / "status-page.png"
        await asyncio.to_thread(
            run_chromium, page_url, f"--screenshot={shot}", "--window-size=1280,1500",
            profile=tmp_path / "profile-shot",
        )  # fmt: skip
    seen = _Tables()
    seen.feed(dom)
    flushes = seen.tables["flushes"]
    assert "poison" in flushes and "entry " in flushes  # the consumer's flush, with its detail
    assert "feed restarted" in flushes and "published" in flushes  # the operator's, its reason
    assert "new_group" in flushes  # the first start's
    assert "decode" in seen.tables["dead-letters"]
    assert "bot" in seen.tables["groups"] and "bot-1" in seen.tables["groups"]
    # throughput and latency plotted, each with data
    assert seen.svgs == 2 and seen.lines >= 2 and all(peak > 0 for peak in seen.peaks)
    assert seen.refresh == "5"
    # The screenshot is kept with the test's temporary files (pytest keeps the last runs)
    print(f"status page screenshot: {shot}")
    assert _png_size(shot) == (1280, 1500)
    assert shot.stat().st_size > 20_000  # a rendered page, not a blank one


def test_cachebus_status_serve_serves_the_same_page(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    chromium()
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "cachebus.cli", "status", "--serve", "--port", str(port),
         "--redis-url", redis_server.url, "--prefix", PREFIX],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        client = redis_server.client()
        client.xadd(StreamKeys(PREFIX).stream("inval"), {FIELD: b"x"})
        client.xgroup_create(StreamKeys(PREFIX).stream("inval"), "web", id="0")
        client.close()

        def served() -> bool:
            try:
                return "<table id=groups>" in _get(f"http://127.0.0.1:{port}/status")
            except OSError:
                return False

        asyncio.run(eventually(served, within=20, what="the page served"))
        dom = run_chromium(
            f"http://127.0.0.1:{port}/status", "--dump-dom", profile=tmp_path / "profile"
        )
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()  # closes its pipes too: no unclosed-file warning after a hang
    seen = _Tables()
    seen.feed(dom)
    assert "web" in seen.tables["groups"]
    assert seen.svgs == 1  # throughput; latency needs a consumer in the process
    assert f"serving http://127.0.0.1:{port}/status" in out
    assert process.returncode == 130, err


@pytest.mark.parametrize("path", ["/readyz", "/healthz"])
def test_status_serve_has_no_probes(path: str) -> None:
    """It is a page for people, not a sidecar: asking it for probes is a 404."""
    from cachebus.health_server import HealthServer

    async def main() -> int:
        server = await HealthServer(None, pages={"/status": lambda: b"x"}).start()
        try:
            return await asyncio.to_thread(_status_code, f"http://127.0.0.1:{server.port}{path}")
        finally:
            await server.close()

    assert asyncio.run(main()) == 404


def _status_code(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as reply:
            return int(reply.status)
    except urllib.error.HTTPError as exc:
        return exc.code
