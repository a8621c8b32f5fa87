"""``invalidates(...)``: publish a service write's invalidations after the write succeeds.

The audit's services forgot to invalidate; this makes the write and its invalidation one
statement. As a decorator, the refs (``KeyRef``, ``PatternRef``, events, or callables that
receive the decorated function's arguments and return refs) are published after the function
returns, in one round trip, and never when it raises. As a context manager, the block is the
write, and ``scope.add(ref)`` adds refs learnt inside it. If the publish itself fails, the
:class:`PublishError` reaches the caller: the write happened, its invalidation did not.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable, Iterable, Sequence
from types import TracebackType
from typing import Any, ParamSpec, TypeVar

from cachebus.contracts.errors import ConfigError
from cachebus.contracts.factory import Ref

__all__ = ["AsyncInvalidates", "InvalidationScope", "SyncInvalidates"]

P = ParamSpec("P")
R = TypeVar("R")
RefSource = Ref | Callable[..., Ref | Iterable[Ref] | None]


class InvalidationScope:
    """The refs a ``with`` block will publish when it succeeds."""

    __slots__ = ("refs",)

    def __init__(self, refs: Iterable[Ref]) -> None:
        self.refs: list[Ref] = list(refs)

    def add(self, *refs: Ref) -> None:
        self.refs.extend(refs)


def _resolve(sources: Sequence[Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[Ref]:
    refs: list[Ref] = []
    for source in sources:
        if not callable(source):
            refs.append(source)
            continue
        made = source(*args, **kwargs)
        if made is None:
            continue
        if isinstance(made, Iterable) and not isinstance(made, str | bytes):
            refs.extend(made)
        else:
            refs.append(made)
    return refs


class _Invalidates:
    def __init__(
        self, publish: Callable[[Sequence[Ref], str], Any], sources: Sequence[Any], reason: str
    ) -> None:
        self._publish = publish
        self._sources = tuple(sources)
        self._reason = reason

    def _static_refs(self) -> list[Ref]:
        if any(callable(s) for s in self._sources):
            raise ConfigError(
                "refs computed from arguments need a decorated function; as a context "
                "manager, give the refs themselves or add them with scope.add(ref)"
            )
        return list(self._sources)


class AsyncInvalidates(_Invalidates):
    """Made by :meth:`Producer.invalidates`."""

    def __call__(self, fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        if not inspect.iscoroutinefunction(fn):
            raise ConfigError(
                f"{getattr(fn, '__qualname__', fn)!r} is not async: decorate sync functions "
                "with SyncProducer.invalidates"
            )

        @functools.wraps(fn)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            result = await fn(*args, **kwargs)
            await self._publish(_resolve(self._sources, args, kwargs), self._reason)
            return result

        return wrapper

    async def __aenter__(self) -> InvalidationScope:
        self._scope = InvalidationScope(self._static_refs())
        return self._scope

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None and self._scope.refs:
            await self._publish(self._scope.refs, self._reason)


class SyncInvalidates(_Invalidates):
    """Made by :meth:`SyncProducer.invalidates`."""

    def __call__(self, fn: Callable[P, R]) -> Callable[P, R]:
        if inspect.iscoroutinefunction(fn):
            raise ConfigError(
                f"{fn.__qualname__!r} is async: decorate it with Producer.invalidates"
            )

        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            result = fn(*args, **kwargs)
            self._publish(_resolve(self._sources, args, kwargs), self._reason)
            return result

        return wrapper

    def __enter__(self) -> InvalidationScope:
        self._scope = InvalidationScope(self._static_refs())
        return self._scope

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None and self._scope.refs:
            self._publish(self._scope.refs, self._reason)
