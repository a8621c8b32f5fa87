"""The consistency checker: does the cache agree with the source of truth, under faults?

Concurrent writers change a source of truth (a dict, or SQLite through the transactional
outbox), readers read through the cache with slow loaders (``Cache.get_or_set``),
invalidations flow through the stream to a consumer, and faults are injected (consumer SIGKILL
and restart, a cut between the consumer and Redis, a Redis restart on its AOF). After
quiescence every cached value is compared with the source. Like Meta's Polaris, it reports the
share of invalidations applied within 1 s, beside the stale values left after quiescence
(the goal: 0).

``run_check(CheckConfig(...)) -> Report`` is the library entry; ``cachebus check`` prints it.
"""

from cachebus.consistency.config import FAULTS, CheckConfig, FaultRecord, Report
from cachebus.consistency.runner import run_check

__all__ = ["FAULTS", "CheckConfig", "FaultRecord", "Report", "run_check"]
