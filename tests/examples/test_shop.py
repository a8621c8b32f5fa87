"""The shop examples against a real Redis: two instances of the FastAPI catalog in-process
(httpx over ASGI, each with its lifespan), and the sync pricing worker as a script.

A write through one instance invalidates: the other instance's L1 and the service's L2 drop
the product, and the next read serves the new price. The worker's writes do the same, and
its own scope is kept by its service's consumer like any other.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import httpx
import pytest
from asgi_lifespan import LifespanManager

from cachebus import CachebusSettings, ConsumerService, KeySpace, Registry
from cachebus.core import Cache
from cachebus.integrations.runtime import CachebusRuntime
from cachebus.testing import RedisServer, eventually
from examples.shop import store
from examples.shop.api import REGISTRY_FILE, create_app
from examples.shop.store import Product

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
REGISTRY = Registry.from_file(REGISTRY_FILE)


class Instance:
    def __init__(self, runtime: CachebusRuntime, client: httpx.AsyncClient) -> None:
        self.runtime = runtime
        self.http = client

    async def price(self) -> float:
        reply = await self.http.get("/products/1")
        assert reply.status_code == 200, reply.text
        return float(Product.model_validate(reply.json()).price)

    async def cached(self) -> tuple[float | None, float | None]:
        """(L1 price, L2 price) of product 1 in this instance, through its /cache route."""
        body = (await self.http.get("/cache/products/1")).json()
        return (
            body["l1"]["price"] if body["l1"] else None,
            body["l2"]["price"] if body["l2"] else None,
        )

    async def ready(self) -> bool:
        return (await self.http.get("/readyz")).status_code == 200


async def _run(*argv: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run, argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "shop.db"
    store.create(path, [Product(id=1, name="kettle", price=10.0)])
    return path


@pytest.fixture
async def instances(redis_server: RedisServer, db: Path) -> AsyncIterator[list[Instance]]:
    async with AsyncExitStack() as stack:
        made = []
        for name in ("a", "b"):  # two members of the catalog service, each with its own L1
            settings = CachebusSettings(
                redis_url=redis_server.url,
                service="catalog",
                consumer=f"catalog-{name}",
                broadcast=True,
                block_ms=100,
            )
            runtime = CachebusRuntime(settings, registry=REGISTRY)
            app = create_app(runtime, db)
            manager = await stack.enter_async_context(LifespanManager(app))
            client = await stack.enter_async_context(
                httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=manager.app), base_url="http://catalog"
                )
            )
            made.append(Instance(runtime, client))
        yield made


async def test_readiness_says_why_until_the_consumer_is_ready(
    redis_server: RedisServer, db: Path
) -> None:
    runtime = CachebusRuntime.from_url(redis_server.url, registry=REGISTRY, service="catalog")
    app = create_app(runtime, db)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://catalog") as client:
        before = await client.get("/readyz")  # the lifespan has not run: no runtime yet
        assert before.status_code == 503
        assert "lifespan has not run" in before.json()["reasons"][0]
        async with LifespanManager(app):
            await eventually(lambda: runtime.health().ready, within=10, what="the catalog consumer")
            reply = await client.get("/readyz")
            assert (reply.status_code, reply.json()) == (200, {"ready": True, "reasons": []})
    assert runtime.service.health().ready is False  # stopped with the app


async def test_a_write_through_one_instance_reaches_the_other_ones_l1_and_l2(
    instances: list[Instance], db: Path
) -> None:
    a, b = instances
    for instance in instances:
        await eventually(instance.ready, within=10, what="both instances ready")
    assert await a.price() == await b.price() == 10.0

    async def b_holds_it_in_l1_and_l2() -> bool:
        await b.price()  # an L1 fill is refused until b's group has caught up
        return await b.cached() == (10.0, 10.0)

    await eventually(b_holds_it_in_l1_and_l2, within=10, what="b to cache product 1 in L1")
    loads_before = b.runtime.cache.stats.loads

    reply = await a.http.put("/products/1/price", json={"price": 12.5})
    assert reply.status_code == 200, reply.text

    async def b_dropped_it() -> bool:
        return await b.cached() == (None, None)

    await eventually(b_dropped_it, within=10, what="b's L1 and the L2 to drop product 1")
    assert await b.price() == 12.5
    assert await a.price() == 12.5
    assert b.runtime.cache.stats.loads == loads_before + 1  # b reloaded it from the database
    assert (await a.http.get("/products/99")).status_code == 404


async def test_the_sync_worker_invalidates_for_the_api_and_is_kept_itself(
    instances: list[Instance], db: Path, redis_server: RedisServer
) -> None:
    a, b = instances
    for instance in instances:
        await eventually(instance.ready, within=10, what="both instances ready")
    assert await b.price() == 10.0
    env = {**os.environ, "CACHEBUS_REDIS_URL": redis_server.url}
    worker = [sys.executable, "-m", "examples.shop.worker", "--db", str(db), "1", "--factor"]
    # The worker's own service keeps its scope ("pricing"), as its sidecar would.
    pricing = ConsumerService.from_url(
        redis_server.url, registry=REGISTRY, service="pricing", settings={"block_ms": 100}
    )
    async with pricing:
        assert await pricing.wait_ready(10)
        done = await _run(*worker, "2", env=env)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "1 kettle: 20.0"

        async def api_sees_it() -> bool:
            return await b.price() == 20.0 and await a.price() == 20.0

        await eventually(api_sees_it, within=10, what="the API to serve the worker's price")
        pricing_scope = Cache(pricing.cache_client, KeySpace(scope="pricing", registry=REGISTRY))

        async def pricing_dropped_it() -> bool:
            return await pricing_scope.get("products", 1) is None

        await eventually(pricing_dropped_it, within=10, what="the worker's scope to drop it")
        again = await _run(*worker, "0.5", env=env)
        assert again.returncode == 0, again.stderr
        assert again.stdout.strip() == "1 kettle: 10.0"  # read 20.0, not the cached 10.0
