"""The pricing worker: a plain sync script that reprices products.

``python -m examples.shop.worker --db shop.db 1 2 --factor 1.1`` (``CACHEBUS_REDIS_URL``):
reads each product through ``@cache.cached`` on a :class:`SyncCache` (its service's scope,
``pricing``, kept by that service's consumer: ``cachebus consume --service pricing``), writes
the new price, and publishes the invalidation with ``load.invalidate(id)`` through its
:class:`SyncProducer`: the catalog API's instances drop it from their L1 and L2.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import assert_type

from cachebus import KeySpace, Registry, SyncCache, SyncProducer
from examples.shop import store
from examples.shop.store import Product

REGISTRY_FILE = Path(__file__).with_name("cachebus.toml")


def reprice(url: str, db: Path, ids: list[int], factor: float) -> list[Product]:
    registry = Registry.from_file(REGISTRY_FILE)
    with (
        SyncCache.from_url(url, KeySpace(scope="pricing", registry=registry)) as cache,
        SyncProducer.from_url(url, producer_name="pricing", registry=registry) as producer,
    ):

        @cache.cached("products", producer=producer, reason="repriced")
        def load(product_id: int) -> Product:
            found = store.load_sync(db, product_id)
            if found is None:
                raise LookupError(f"no product {product_id}")
            return found

        repriced = []
        for product_id in ids:
            product = assert_type(load(product_id), Product)
            new = Product(id=product.id, name=product.name, price=round(product.price * factor, 2))
            store.set_price_sync(db, product_id, new.price)
            assert_type(load.invalidate(product_id), list[str])  # after the write
            repriced.append(new)
        return repriced


class Arguments(argparse.Namespace):
    ids: list[int]
    db: Path
    factor: float


def main() -> None:
    parser = argparse.ArgumentParser(description="Reprice products.")
    parser.add_argument("ids", type=int, nargs="+")
    parser.add_argument("--db", type=Path, required=True)
    parser.add_argument("--factor", type=float, default=1.1)
    args = parser.parse_args(namespace=Arguments())
    for product in reprice(os.environ["CACHEBUS_REDIS_URL"], args.db, args.ids, args.factor):
        print(f"{product.id} {product.name}: {product.price}")


if __name__ == "__main__":
    main()
