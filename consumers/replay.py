"""Whether a member owes a replay of its own pending entries before it reads new ones.

``XREADGROUP ... >`` and ``XAUTOCLAIM`` change the group as they run: the entries they return
are recorded as delivered to this member, whether or not the reply ever reaches it. When a
read or a claim fails (a cut connection, a timeout while the server was paused, a restart),
the server may have run it: its entries sit in this member's pending list, unseen. Reading
``>`` again never returns them, and XAUTOCLAIM takes them back only after ``min_idle_ms``
(30 s by default), so the cache would serve stale values all that while.

So after any stream-side failure (a read, claim or ack that failed, a server whose run_id
changed) the member reads its own pending entries (id ``0``) first, and only then ``>``. In the
normal case that is one empty read. A member also owes one when it (re)starts and after its
group is recreated.

A failure that happens *while* the replay runs (an ack retried inside it, say) owes another:
:meth:`ReplayDue.settle` clears the debt only if nothing was owed since :meth:`begin`.

After a failure the replay is done twice: at once, and again after the next ``>`` read. A
command the server had not run yet when the failure surfaced (a paused server runs the copy
our timed-out connection left behind when it resumes, possibly after our first replay) has
run by then: its entries are picked up one read cycle later instead of after ``min_idle_ms``.
"""

from __future__ import annotations

__all__ = ["ReplayDue"]

_FOLLOW_UP = "follow-up after a failure"


class ReplayDue:
    def __init__(self) -> None:
        #: Why the replay is owed (the first reason since the last replay), or None.
        self.reason: str | None = "start"
        self._owed = 1  # how many times a replay was owed, ever
        self._again = False  # replay once more after the next read of new entries

    @property
    def due(self) -> bool:
        return self.reason is not None

    @property
    def blocks_readiness(self) -> bool:
        """Due for a reason that may hide unapplied entries (the follow-up is a precaution)."""
        return self.reason is not None and self.reason != _FOLLOW_UP

    def owe(self, reason: str, *, again: bool = True) -> None:
        """A replay is due before the next read of new entries; with ``again`` (a failure),
        one more after that read."""
        self._owed += 1
        self._again = self._again or again
        if self.reason is None:
            self.reason = reason

    def read_new(self) -> None:
        """A read of new entries (``>``) succeeded: the follow-up replay, if any, is due now."""
        if self._again and self.reason is None:
            self._again = False
            self.reason = _FOLLOW_UP

    def begin(self) -> int:
        """A replay starts now; pass what this returns to :meth:`settle` when it is done."""
        return self._owed

    def settle(self, token: int) -> None:
        if token == self._owed:
            self.reason = None
