"""The check's load: writers change the source and invalidate, readers ``get_or_set``.

Writers invalidate one item (a key), a whole group (a pattern, ``g3:*``) or, rarely, the
namespace (a flush). Readers load through slow loaders (a sleep before and after reading the
source), so fills race invalidations. Both favour a few hot items, where races happen in real
services. After the load, :meth:`Workload.sweep` changes every item once more while readers
still fill.
"""

from __future__ import annotations

import asyncio
import functools
import random
import time
from collections.abc import Sequence
from typing import Any

from cachebus.consistency.config import CheckConfig
from cachebus.consistency.ledger import Ledger
from cachebus.consistency.registry import NAMESPACE
from cachebus.consistency.sources import Source
from cachebus.contracts.keys import KeyRef, PatternRef
from cachebus.core import Cache

__all__ = ["Workload"]


class Workload:
    def __init__(
        self, config: CheckConfig, ids: Sequence[str], source: Source, ledger: Ledger
    ) -> None:
        self.config = config
        self.ids = list(ids)
        self.source = source
        self.ledger = ledger
        self.stop_writers = asyncio.Event()
        self.stop_readers = asyncio.Event()

    async def writer(self, index: int) -> None:
        cfg = self.config
        rng = random.Random(cfg.seed * 1000 + index)
        interval = cfg.writers / cfg.write_rate
        while not self.stop_writers.is_set():
            roll = rng.random()
            if roll < cfg.flush_share:
                ids = [self._pick(rng)]
                ref: Any = self.source.producer.factory.flush(NAMESPACE, reason="check")
            elif roll < cfg.flush_share + cfg.pattern_share:
                group = rng.randrange(cfg.groups)
                ids = [i for i in self.ids if i.startswith(f"g{group}:")]
                ref = PatternRef(NAMESPACE, f"g{group}:*")
            else:
                ident = self._pick(rng)
                ids, ref = [ident], KeyRef(NAMESPACE, ident)
            await self.source.change(index, ids, ref)
            await asyncio.sleep(interval * rng.uniform(0.5, 1.5))

    def _pick(self, rng: random.Random) -> str:
        """An item, ``hot_share`` of the time among the first ``hot_keys`` (hot items are where
        reads and writes race)."""
        hot = max(1, int(len(self.ids) * self.config.hot_keys))
        if rng.random() < self.config.hot_share:
            return self.ids[rng.randrange(hot)]
        return rng.choice(self.ids)

    async def sweep(self) -> None:
        """Change every item once more, readers still filling: the final state then depends
        on how every item's last invalidation raced the fills in flight."""
        cfg = self.config
        rng = random.Random(cfg.seed * 3000)
        order = list(self.ids)
        rng.shuffle(order)
        share = cfg.pattern_share / (1 - cfg.flush_share) if cfg.flush_share < 1 else 0.0
        interval = cfg.writers / cfg.write_rate

        async def sweeper(index: int) -> None:
            for ident in order[index :: cfg.writers]:
                if rng.random() < share:
                    group = ident.split(":", 1)[0]
                    ids = [i for i in self.ids if i.startswith(f"{group}:")]
                    await self.source.change(index, ids, PatternRef(NAMESPACE, f"{group}:*"))
                else:
                    await self.source.change(index, [ident], KeyRef(NAMESPACE, ident))
                await asyncio.sleep(interval)

        await asyncio.gather(*(sweeper(i) for i in range(cfg.writers)))

    async def reader(self, cache: Cache, index: int) -> None:
        cfg = self.config
        rng = random.Random(cfg.seed * 2000 + index)
        interval = cfg.readers / cfg.read_rate
        delay = cfg.max_load_delay_s

        async def load(ident: str) -> dict[str, int]:
            await asyncio.sleep(rng.uniform(0, delay))
            version = await self.source.read(ident)
            await asyncio.sleep(rng.uniform(0, delay))
            return {"v": version}

        while not self.stop_readers.is_set():
            ident = self._pick(rng)
            at = int(time.time() * 1000)
            value = await cache.get_or_set(NAMESPACE, ident, functools.partial(load, ident))
            self.ledger.read(ident, int(value["v"]), at)
            await asyncio.sleep(interval * rng.uniform(0.5, 1.5))
