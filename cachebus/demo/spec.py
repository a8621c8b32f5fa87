"""What the demo's processes are told: a JSON spec in the environment, URLs beside it.

Redis URLs carry passwords, so they travel in ``CACHEBUS_REDIS_URL`` / ``CACHEBUS_CACHE_URL``
(the environment of the child only), never on a command line that ``ps`` shows.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cachebus.contracts.registry import Registry
    from cachebus.demo.world import WorldShape

__all__ = ["SPEC_ENV", "Spec", "write_stats"]

SPEC_ENV = "CACHEBUS_DEMO_SPEC"


@dataclass(frozen=True, slots=True)
class Spec:
    run_dir: str
    prefix: str = "cb"
    stream: str = "inval"
    users: int = 200
    markets: int = 100
    #: Writes per second of the API service and of the price workers.
    api_rate: float = 120.0
    workers_rate: float = 250.0
    #: Reads per second of each consuming service (through L1, then L2, then the source).
    read_rate: float = 300.0
    #: Share of traces recorded (every process follows the producer's decision).
    trace_ratio: float = 0.02
    #: How slow a load from the source is (seconds): wide enough for fills to race.
    load_delay_s: float = 0.005
    #: A registry file to use instead of the demo's own ("": the demo's).
    registry: str = ""
    #: The PostgreSQL part runs (its DSN travels in CACHEBUS_DEMO_DATABASE_URL): an admin
    #: fixes risk limits there without publishing, the commit-log relay invalidates them.
    postgres: bool = False
    slot: str = ""
    publication: str = ""
    #: Admin transactions per second (each changes one to four rows).
    admin_rate: float = 25.0
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def root(self) -> Path:
        return Path(self.run_dir)

    def load_registry(self) -> Registry:
        """The registry every process of the run loads."""
        from cachebus.demo.registry import demo_registry

        return demo_registry(self.registry or None)

    def shape(self) -> WorldShape:
        from cachebus.demo.world import WorldShape

        return WorldShape(self.users, self.markets, self.load_registry(), self.postgres)

    @property
    def world_path(self) -> Path:
        return self.root / "world.db"

    def to_env(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_env(cls) -> Spec:
        return cls(**json.loads(os.environ[SPEC_ENV]))


def write_stats(path: Path, stats: Mapping[str, object]) -> None:
    """Replace ``path`` atomically: the live view never reads half a file."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(stats))
    os.replace(tmp, path)
