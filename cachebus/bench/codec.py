"""``cachebus bench codec``: zlib vs zstd vs zstd+dictionary on realistic cache values.

Values are Gamma-like market lists and data-API-like position lists of ~1, 10 and 100 KB
(:mod:`cachebus.bench._samples`), serialized with orjson. Compared, per value:

* ``zlib-6``: the audit's proposal (``zlib.compress``, default level), on every value;
* ``zlib-1`` and ``zstd-1``: the raw libraries, for reference;
* ``ours``: :class:`~cachebus.core.ValueCodec` as the cache uses it (header + CRC; zstd level 1
  from ``compress_threshold`` = 1 KB, raw below);
* ``ours+dict``: the same with a 16 KB dictionary trained on *other* values of the same kind
  (as ``cachebus codec train`` does); the dictionary serves values under 4 KB, larger ones
  get plain zstd (a dictionary gains little there and costs ~1.5x the time).

Ratios count every stored byte, our header included. Times are µs per value, compressor
objects reused. The passes of every codec are interleaved (one pass each, ``--repeats``
rounds) so they share the machine's conditions; the table shows the best pass (as
``timeit`` does: on a shared VM the slower passes measure the neighbours, not the code) and
the JSON gives the median too.
"""

from __future__ import annotations

import functools
import random
import statistics
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import orjson
import typer
import zstandard

from cachebus.bench import bench_app
from cachebus.bench._report import emit
from cachebus.bench._samples import sized_json
from cachebus.core import ValueCodec
from cachebus.core.dictionary import Dictionary

__all__ = ["codec"]

_SIZES = (("1k", 1024), ("10k", 10 * 1024), ("100k", 100 * 1024))
_KINDS = ("market", "position")


def _pass_us(fn: Callable[[Any], Any], values: Sequence[Any]) -> float:
    started = time.perf_counter()
    for value in values:
        fn(value)
    return (time.perf_counter() - started) / len(values) * 1e6


def _interleaved(
    fns: Mapping[str, Callable[[Any], Any]], inputs: Mapping[str, Sequence[Any]], repeats: int
) -> dict[str, tuple[float, float]]:
    """``name -> (best, median)`` µs per value, passes of every function interleaved."""
    passes: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            passes[name].append(_pass_us(fn, inputs[name]))
    return {name: (min(p), statistics.median(p)) for name, p in passes.items()}


def _methods(
    dictionary: Dictionary,
) -> dict[str, tuple[Callable[[bytes], bytes], Callable[[bytes], Any]]]:
    zstd_c = zstandard.ZstdCompressor(level=1)
    zstd_d = zstandard.ZstdDecompressor()
    ours = ValueCodec()
    ours_dict = ValueCodec(dictionaries={None: dictionary})
    return {
        "zlib-6": (zlib.compress, zlib.decompress),
        "zlib-1": (lambda v: zlib.compress(v, 1), zlib.decompress),
        "zstd-1": (zstd_c.compress, zstd_d.decompress),
        "ours": (lambda v: ours.encode(v, 1), ours.decode),
        "ours+dict": (lambda v: ours_dict.encode(v, 1), ours_dict.decode),
    }


@bench_app.command("codec")
def codec(
    values: int = typer.Option(0, help="values per kind and size (0: 400/100/20 for 1/10/100 KB)"),
    train: int = typer.Option(2000, help="~1 KB samples per kind to train each dictionary"),
    repeats: int = typer.Option(9, help="interleaved timed passes per codec"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object last"),
) -> None:
    """Compression ratio and speed of the cache codec against zlib, on market/position JSON."""
    rows: list[list[Any]] = []
    results: dict[str, dict[str, dict[str, float]]] = {}
    for kind in _KINDS:
        samples = [sized_json(kind, 1024, random.Random(10_000 + i)) for i in range(train)]
        dictionary = Dictionary.train(samples)
        methods = _methods(dictionary)
        for label, size in _SIZES:
            count = values or {1024: 400, 10240: 100, 102400: 20}[size]
            data = [sized_json(kind, size, random.Random(i)) for i in range(count)]
            raw = sum(len(v) for v in data)
            stored = {name: [pair[0](v) for v in data] for name, pair in methods.items()}
            compress = _interleaved(
                {name: pair[0] for name, pair in methods.items()},
                {name: data for name in methods},
                repeats,
            )
            decompress = _interleaved(
                {name: pair[1] for name, pair in methods.items()}, stored, repeats
            )
            for name in methods:
                ratio = raw / sum(len(s) for s in stored[name])
                (c_best, c_median), (d_best, d_median) = compress[name], decompress[name]
                results.setdefault(f"{kind}_{label}", {})[name] = {
                    "ratio": round(ratio, 3),
                    "compress_us": round(c_best, 2),
                    "compress_us_median": round(c_median, 2),
                    "decompress_us": round(d_best, 2),
                    "decompress_us_median": round(d_median, 2),
                }
                rows.append([f"{kind} {label}", name, raw // count, ratio, c_best, d_best])
        # What a caller pays from a Python object: orjson.dumps + our codec.
        objects = [orjson.loads(sized_json(kind, 10 * 1024, random.Random(i))) for i in range(50)]
        encode = functools.partial(ValueCodec().encode, generation=1)
        best, _median = _interleaved({"o": encode}, {"o": objects}, repeats)["o"]
        results[f"{kind}_10k"]["ours"]["encode_object_us"] = round(best, 2)
    market10 = results["market_10k"]["ours"]
    summary: dict[str, Any] = {
        "ratio_10k": market10["ratio"],
        "compress_us_10k": market10["compress_us"],
        "dict_ratio_1k": results["market_1k"]["ours+dict"]["ratio"],
        "positions_ratio_10k": results["position_10k"]["ours"]["ratio"],
        "positions_compress_us_10k": results["position_10k"]["ours"]["compress_us"],
        "positions_dict_ratio_1k": results["position_1k"]["ours+dict"]["ratio"],
        "compress_us_10k_median": market10["compress_us_median"],
        "zstd1_compress_us_10k": results["market_10k"]["zstd-1"]["compress_us"],
        "zlib6_ratio_10k": results["market_10k"]["zlib-6"]["ratio"],
        "zlib6_compress_us_10k": results["market_10k"]["zlib-6"]["compress_us"],
        "results": results,
        "targets": {"ratio_10k": ">= 3", "compress_us_10k": "<= 30", "dict_ratio_1k": ">= 3"},
    }
    summary["pass"] = (
        summary["ratio_10k"] >= 3
        and summary["compress_us_10k"] <= 30
        and summary["dict_ratio_1k"] >= 3
    )
    emit(
        "cache value codec: zlib vs zstd vs zstd+dictionary",
        ["value", "codec", "bytes", "ratio", "compress µs (best)", "decompress µs (best)"],
        rows,
        summary,
        as_json=as_json,
        notes=[
            "ratio counts every stored byte (our header: 10-16 bytes); 'ours' keeps values "
            "under 1 KB raw; dictionaries were trained on other values of the same kind",
        ],
    )
