"""FastAPI wiring (the ``fastapi`` extra): a lifespan, dependencies, a readiness route.

::

    runtime = CachebusRuntime(CachebusSettings(service="web", broadcast=True))
    app = FastAPI(lifespan=cachebus_lifespan(runtime))
    app.include_router(readiness_router())

    @app.get("/products/{product_id}")
    async def read(product_id: int, cache: CacheDep) -> ...: ...

    @app.put("/products/{product_id}")
    async def write(product_id: int, producer: ProducerDep) -> ...: ...

:func:`cachebus_lifespan` starts the runtime (the service's consumer and, with ``broadcast``,
its L1 broadcast consumer) before the app serves and stops it after, then runs the app's own
lifespan if one is given; it puts the runtime in ``app.state.cachebus``, where the
dependencies find it. ``/readyz`` answers 200 once the group consumer is ready and 503 with
its reasons while not (also before the lifespan ran), for a load balancer or a Kubernetes
readiness probe.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Annotated

try:
    from fastapi import Depends, FastAPI, Request
    from fastapi.responses import JSONResponse
    from fastapi.routing import APIRouter
except ModuleNotFoundError as exc:  # pragma: no cover - exercised by tests/packaging
    if exc.name not in ("fastapi", "starlette", "pydantic"):
        raise
    raise ImportError(
        "cachebus.integrations.fastapi needs the fastapi extra: pip install 'cachebus[fastapi]'"
    ) from None

from cachebus.contracts.errors import ConfigError
from cachebus.core.cache import Cache
from cachebus.core.local import LocalCache
from cachebus.integrations.runtime import CachebusRuntime
from cachebus.producers.producer import Producer

__all__ = [
    "CacheDep",
    "LocalDep",
    "ProducerDep",
    "RuntimeDep",
    "cachebus_lifespan",
    "get_cache",
    "get_local",
    "get_producer",
    "get_runtime",
    "readiness_router",
]

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]


def cachebus_lifespan(runtime: CachebusRuntime, then: Lifespan | None = None) -> Lifespan:
    """A lifespan that runs ``runtime`` around the app (and ``then``, the app's own, inside)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.cachebus = runtime
        async with runtime:
            if then is None:
                yield
            else:
                async with then(app):
                    yield

    return lifespan


async def get_runtime(request: Request) -> CachebusRuntime:
    """The app's runtime (async, like every dependency here: no thread for a lookup)."""
    runtime = getattr(request.app.state, "cachebus", None)
    if not isinstance(runtime, CachebusRuntime):
        raise ConfigError(
            "no cachebus runtime on this app: create it with "
            "FastAPI(lifespan=cachebus_lifespan(runtime))"
        )
    return runtime


async def get_cache(request: Request) -> Cache:
    """The service's cache (its L2 scope, kept by its consumer)."""
    return (await get_runtime(request)).cache


async def get_producer(request: Request) -> Producer:
    """The service's producer."""
    return (await get_runtime(request)).producer


async def get_local(request: Request) -> LocalCache:
    """The service's L1 (needs ``broadcast``)."""
    local = (await get_runtime(request)).local
    if local is None:
        raise ConfigError("this service keeps no L1: run it with broadcast=True")
    return local


RuntimeDep = Annotated[CachebusRuntime, Depends(get_runtime)]
CacheDep = Annotated[Cache, Depends(get_cache)]
ProducerDep = Annotated[Producer, Depends(get_producer)]
LocalDep = Annotated[LocalCache, Depends(get_local)]


def readiness_router(path: str = "/readyz") -> APIRouter:
    """``GET path``: 200 ``{"ready": true}``, or 503 with the reasons the service is not."""
    router = APIRouter()

    @router.get(path, include_in_schema=False)
    async def readyz(request: Request) -> JSONResponse:
        runtime = getattr(request.app.state, "cachebus", None)
        if not isinstance(runtime, CachebusRuntime):
            body = {
                "ready": False,
                "reasons": ["cachebus is not started: the lifespan has not run"],
            }
            return JSONResponse(body, status_code=503)
        health = runtime.health()
        body = {"ready": health.ready, "reasons": list(health.reasons)}
        return JSONResponse(body, status_code=200 if health.ready else 503)

    return router
