"""The status page: ``/status`` on the sidecar's health port, or ``cachebus status --serve``.

It shows what ``cachebus status`` reports (groups, members, lag, pending, dead letters, the
last flush) plus what only a running process can see: the last minutes of throughput and
publish->apply latency as plots, and the flush timeline with reasons (see
:mod:`cachebus.ops.status_history`). A background poll (every ``poll_s``) keeps the history
going while nobody looks; a request renders the latest poll, so a page view costs no Redis
round trip and a reload storm cannot load Redis.

The poll reads what ``cachebus status`` reads, as far as the user may: a service's
least-privilege consumer user is refused ``TYPE``, the dead-letter streams and other groups'
meta and counters, so the page shows what those would tell as ``?`` and lists the refused
commands, beside everything else (lag, pending, members, the flushes and latency its own
consumer saw).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import redis.asyncio

from cachebus.contracts.errors import CachebusError
from cachebus.contracts.keys import StreamKeys
from cachebus.core._tasks import cancel_and_wait
from cachebus.ops.dead_letters import DeadLetter, read_dead_letters
from cachebus.ops.status import StreamStatus, collect_status
from cachebus.ops.status_history import StatusHistory
from cachebus.ops.status_html import render_page

__all__ = ["StatusPage"]

log = logging.getLogger("cachebus.status")

_LETTERS_SHOWN = 10


class StatusPage:
    """Polls one Redis for the status of ``streams`` (under each of ``layouts``: one per
    partition) and renders the page."""

    def __init__(
        self,
        client: redis.asyncio.Redis,
        layouts: Sequence[StreamKeys],
        streams: Sequence[str],
        *,
        history: StatusHistory | None = None,
        title: str = "cachebus status",
        where: str = "Redis",
        poll_s: float = 2.0,
        refresh_s: int = 5,
    ) -> None:
        self.client = client
        self.layouts = tuple(layouts)
        self.streams = tuple(streams)
        self.history = history or StatusHistory()
        self.title = title
        self.where = where
        self.poll_s = poll_s
        self.refresh_s = refresh_s
        self._statuses: list[StreamStatus] = []
        self._letters: dict[str, list[DeadLetter]] = {}
        self._problem: str | None = "not polled yet"
        self._task: asyncio.Task[None] | None = None

    async def poll(self) -> None:
        """One round: the status of every stream, the newest dead letters of every group."""
        try:
            statuses: list[StreamStatus] = []
            letters: dict[str, list[DeadLetter]] = {}
            for keys in self.layouts:
                found = await collect_status(
                    self.client, keys, self.streams, where=self.where, tolerate_refusals=True
                )
                for s in found:
                    for g in s.groups:
                        if g.dlq_depth:
                            letters.setdefault(g.name, []).extend(
                                await read_dead_letters(
                                    self.client, keys.dead_letter(s.name, g.name),
                                    limit=_LETTERS_SHOWN, newest=True, where=self.where,
                                )
                            )  # fmt: skip
                statuses += found
        except CachebusError as exc:  # shown on the page, with the last data seen
            self._problem = str(exc)
            log.debug("status poll failed: %s", exc)
            return
        self.history.observe_status(statuses)
        self._statuses, self._letters, self._problem = statuses, letters, None

    def render(self) -> bytes:
        return render_page(
            self._statuses, self.history, self._letters,
            title=self.title, refresh_s=self.refresh_s, problem=self._problem,
        ).encode()  # fmt: skip

    async def _loop(self) -> None:
        while True:
            await self.poll()
            await asyncio.sleep(self.poll_s)

    def start(self) -> StatusPage:
        self._task = asyncio.ensure_future(self._loop())
        return self

    async def close(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None
