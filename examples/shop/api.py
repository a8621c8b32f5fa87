"""The catalog API: FastAPI over the shop's registry, reading L1 → L2 → database.

Run it with ``uvicorn --factory examples.shop.api:app_from_env`` (``CACHEBUS_REDIS_URL``,
``SHOP_DB``); ``tests/examples/test_shop.py`` runs two instances of it in-process.

* ``GET /products/{id}``: through ``@cache.cached`` (the L1, then the lease-guarded L2 fill);
* ``PUT /products/{id}/price``: writes the database, then publishes the invalidation: every
  instance's consumers drop it from the service's L2 and from each instance's L1;
* ``GET /cache/products/{id}``: what this instance's L1 and L2 hold (the dependencies);
* ``GET /readyz``: 200 once the service's consumer is ready, 503 with the reasons before.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import assert_type

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel

from cachebus import CachebusSettings, Registry
from cachebus.integrations.fastapi import (
    CacheDep,
    LocalDep,
    ProducerDep,
    cachebus_lifespan,
    readiness_router,
)
from cachebus.integrations.runtime import CachebusRuntime
from examples.shop import store
from examples.shop.store import Product

__all__ = ["REGISTRY_FILE", "app_from_env", "create_app"]

REGISTRY_FILE = Path(__file__).with_name("cachebus.toml")


class NewPrice(BaseModel):
    price: float


class Cached(BaseModel):
    l1: Product | None
    l2: Product | None


class NotFound(Exception):
    """A product that is not in the database: raised by the loader, so nothing is cached."""


def create_app(runtime: CachebusRuntime, db: Path) -> FastAPI:
    """One instance of the API, on ``runtime`` (its consumers start with the app)."""

    @runtime.cache.cached("products", producer=runtime.producer, local=runtime.local)
    async def product(product_id: int) -> Product:
        found = await store.load(db, product_id)
        if found is None:
            raise NotFound(product_id)
        return found

    app = FastAPI(title="catalog", lifespan=cachebus_lifespan(runtime))
    app.include_router(readiness_router())

    @app.get("/products/{product_id}")
    async def read(product_id: int) -> Product:
        try:
            return assert_type(await product(product_id), Product)
        except NotFound:
            raise HTTPException(404, f"no product {product_id}") from None

    @app.put("/products/{product_id}/price")
    async def reprice(product_id: int, change: NewPrice, producer: ProducerDep) -> dict[str, str]:
        if not await store.set_price(db, product_id, change.price):
            raise HTTPException(404, f"no product {product_id}")
        # After the commit: a consumer that applied it before would let the old row back in.
        (entry_id,) = await producer.invalidate(product.ref(product_id), reason="price changed")
        return {"invalidation": entry_id}

    @app.get("/cache/products/{product_id}")
    async def cached(product_id: int, cache: CacheDep, local: LocalDep) -> Cached:
        l2 = await cache.get("products", product_id, type=Product)
        l1 = local.get("products", product_id, type=Product)
        return Cached(l1=l1, l2=assert_type(l2, Product | None))

    return app


def app_from_env() -> FastAPI:
    """The app as ``uvicorn --factory`` builds it: ``CACHEBUS_*`` variables and ``SHOP_DB``."""
    registry = Registry.from_file(REGISTRY_FILE)
    settings = CachebusSettings(service="catalog", broadcast=True)
    return create_app(CachebusRuntime(settings, registry=registry), Path(os.environ["SHOP_DB"]))
