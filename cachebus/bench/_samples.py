"""Realistic cache values: Gamma-API-like markets and data-API-like positions (perf-baseline §e).

The field names, id shapes (0x-prefixed 32-byte condition ids, 77-digit CLOB token ids), number
formats (prices as strings inside JSON strings, floats with many digits) and free text follow
the public Polymarket Gamma ``/markets`` and data-api ``/positions`` responses, so compression
ratios measured on them are close to what the audit's services cache. Deterministic per seed.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

__all__ = ["market", "market_json", "position", "positions_json", "sized_json"]

_TEXT = (
    "will the price of bitcoin ethereum solana reach above below by end of election senate house "
    "fed rate cut hike inflation cpi january february march april may june july august september "
    "october november december 2025 2026 win championship finals nba nfl premier league team "
    "candidate president governor approval poll market resolve yes no according official source "
    "data released announced before after date this market will resolve to if otherwise"
)
_WORDS = _TEXT.split(" ")
_TOPICS = ("Bitcoin", "Ethereum", "Fed", "NBA", "Election", "Solana", "Oscars", "GDP", "Tesla")
_CATEGORIES = ("Crypto", "Politics", "Sports", "Economics", "Culture", "Tech")


def _hex(rng: random.Random, nbytes: int) -> str:
    return "0x" + rng.randbytes(nbytes).hex()


def _token(rng: random.Random) -> str:
    return str(rng.randrange(10**76, 10**77))


def _sentence(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(words)).capitalize() + "."


def _date(rng: random.Random, base: datetime) -> datetime:
    return base + timedelta(seconds=rng.randrange(0, 400 * 86400))


def market(rng: random.Random) -> dict[str, Any]:
    """One market as the Gamma API returns it (trimmed to the fields the services cache)."""
    base = datetime(2025, 1, 1, tzinfo=UTC)
    start = _date(rng, base)
    end = start + timedelta(days=rng.randrange(1, 200))
    topic = rng.choice(_TOPICS)
    question = f"Will {topic} {_sentence(rng, rng.randrange(5, 10))[:-1].lower()}?"
    slug = "-".join(question.lower().strip("?").split()[:8])
    yes = round(rng.random(), 3)
    volume = rng.random() * 10 ** rng.randrange(3, 8)
    liquidity = rng.random() * 10 ** rng.randrange(2, 6)
    return {
        "id": str(rng.randrange(500000, 700000)),
        "question": question,
        "conditionId": _hex(rng, 32),
        "slug": slug,
        "endDate": end.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "startDate": start.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "category": rng.choice(_CATEGORIES),
        "liquidity": f"{liquidity:.4f}",
        "volume": f"{volume:.6f}",
        "volumeNum": volume,
        "liquidityNum": liquidity,
        "volume24hr": round(volume * rng.random() / 10, 6),
        "icon": f"https://polymarket-upload.s3.us-east-2.amazonaws.com/{slug[:30]}.png",
        "description": _sentence(rng, rng.randrange(6, 14)),
        "outcomes": '["Yes", "No"]',
        "outcomePrices": f'["{yes}", "{round(1 - yes, 3)}"]',
        "active": True,
        "closed": rng.random() < 0.1,
        "marketMakerAddress": "",
        "updatedAt": _date(rng, start).isoformat().replace("+00:00", "Z"),
        "new": False,
        "featured": rng.random() < 0.05,
        "enableOrderBook": True,
        "orderPriceMinTickSize": 0.01,
        "orderMinSize": 5,
        "clobTokenIds": f'["{_token(rng)}", "{_token(rng)}"]',
        "bestBid": round(max(yes - 0.01, 0), 3),
        "bestAsk": round(min(yes + 0.01, 1), 3),
        "lastTradePrice": yes,
        "negRisk": rng.random() < 0.3,
    }


def position(rng: random.Random, wallet: str) -> dict[str, Any]:
    """One position as the data API's ``/positions`` returns it."""
    size = round(rng.random() * 5000, 6)
    avg = round(rng.random(), 4)
    cur = round(rng.random(), 4)
    title = f"Will {rng.choice(_TOPICS)} {_sentence(rng, rng.randrange(4, 9))[:-1].lower()}?"
    slug = "-".join(title.lower().strip("?").split()[:8])
    outcome_index = rng.randrange(2)
    return {
        "proxyWallet": wallet,
        "asset": _token(rng),
        "conditionId": _hex(rng, 32),
        "size": size,
        "avgPrice": avg,
        "initialValue": round(size * avg, 6),
        "currentValue": round(size * cur, 6),
        "cashPnl": round(size * (cur - avg), 6),
        "percentPnl": round((cur - avg) / avg * 100 if avg else 0.0, 6),
        "totalBought": round(size * (1 + rng.random()), 6),
        "realizedPnl": round((rng.random() - 0.5) * 100, 6),
        "percentRealizedPnl": round((rng.random() - 0.5) * 10, 6),
        "curPrice": cur,
        "redeemable": rng.random() < 0.1,
        "mergeable": False,
        "title": title,
        "slug": slug,
        "icon": f"https://polymarket-upload.s3.us-east-2.amazonaws.com/{slug[:30]}.png",
        "eventSlug": slug[:40],
        "outcome": ("Yes", "No")[outcome_index],
        "outcomeIndex": outcome_index,
        "oppositeOutcome": ("No", "Yes")[outcome_index],
        "oppositeAsset": _token(rng),
        "endDate": _date(rng, datetime(2025, 1, 1, tzinfo=UTC)).strftime("%Y-%m-%d"),
        "negativeRisk": rng.random() < 0.3,
    }


def sized_json(kind: str, target_bytes: int, rng: random.Random) -> bytes:
    """A JSON value of about ``target_bytes``: one object for ~1 KB, a list above that."""
    if kind not in ("market", "position"):
        raise ValueError(f"unknown sample kind {kind!r}; use 'market' or 'position'")
    wallet = _hex(rng, 20)

    def make() -> dict[str, Any]:
        return market(rng) if kind == "market" else position(rng, wallet)

    if target_bytes <= 1500:
        return orjson.dumps(make())
    items: list[dict[str, Any]] = []
    size = 2
    while size < target_bytes:
        obj = make()
        items.append(obj)
        size += len(orjson.dumps(obj)) + 1
    return orjson.dumps(items)


def market_json(target_bytes: int, seed: int = 0) -> bytes:
    return sized_json("market", target_bytes, random.Random(seed))


def positions_json(target_bytes: int, seed: int = 0) -> bytes:
    return sized_json("position", target_bytes, random.Random(seed))
