"""The shop's database: one SQLite table, read and written by the API (async) and the worker."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import aiosqlite
from pydantic import BaseModel

__all__ = ["Product", "create", "load", "load_sync", "set_price", "set_price_sync"]

_SCHEMA = "CREATE TABLE IF NOT EXISTS products (id INTEGER PRIMARY KEY, name TEXT, price REAL)"


class Product(BaseModel):
    id: int
    name: str
    price: float


def create(path: Path, products: list[Product]) -> None:
    """The table, with these products."""
    with sqlite3.connect(path) as db:
        db.execute(_SCHEMA)
        db.executemany(
            "INSERT OR REPLACE INTO products VALUES (?, ?, ?)",
            [(p.id, p.name, p.price) for p in products],
        )
    db.close()


def _product(row: sqlite3.Row | tuple[int, str, float] | None) -> Product | None:
    return None if row is None else Product(id=row[0], name=row[1], price=row[2])


async def load(path: Path, product_id: int) -> Product | None:
    async with (
        aiosqlite.connect(path) as db,
        db.execute("SELECT id, name, price FROM products WHERE id = ?", (product_id,)) as rows,
    ):
        return _product(await rows.fetchone())


async def set_price(path: Path, product_id: int, price: float) -> bool:
    async with aiosqlite.connect(path) as db:
        changed = await db.execute(
            "UPDATE products SET price = ? WHERE id = ?", (price, product_id)
        )
        await db.commit()
        return changed.rowcount == 1


def load_sync(path: Path, product_id: int) -> Product | None:
    with sqlite3.connect(path) as db:
        row = db.execute(
            "SELECT id, name, price FROM products WHERE id = ?", (product_id,)
        ).fetchone()
    db.close()
    return _product(row)


def set_price_sync(path: Path, product_id: int, price: float) -> bool:
    with sqlite3.connect(path) as db:
        changed = db.execute("UPDATE products SET price = ? WHERE id = ?", (price, product_id))
    db.close()
    return changed.rowcount == 1
