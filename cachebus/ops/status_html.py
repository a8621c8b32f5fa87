"""The status page's HTML: one self-contained document, its plots inline SVG drawn here.

No script and no framework: the page refreshes itself (``<meta http-equiv="refresh">``), the
plots are polylines computed on the server. Every value that comes from Redis (group names,
reasons, errors) is escaped.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from html import escape

from cachebus.ops._common import age
from cachebus.ops.dead_letters import DeadLetter
from cachebus.ops.status import StreamStatus
from cachebus.ops.status_history import Bucket, FlushMark, StatusHistory

__all__ = ["line_chart", "render_page"]

_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.2em 2em;color:#1b1f24;background:#fafbfc}
h1{font-size:1.4em;margin:0 0 .2em}h2{font-size:1.1em;margin:1.4em 0 .4em}
table{border-collapse:collapse;background:#fff}td,th{border:1px solid #d0d7de;padding:3px 8px}
th{background:#f0f3f6;text-align:left}td.n{text-align:right;font-variant-numeric:tabular-nums}
.bad{color:#b42318;font-weight:600}.ok{color:#1a7f37}.muted{color:#656d76}
.charts{display:flex;gap:2em;flex-wrap:wrap}figure{margin:0}figcaption{font-weight:600}
"""
_COLOURS = ("#0969da", "#cf222e", "#8250df", "#1a7f37")


def _when(at_ms: int) -> str:
    return dt.datetime.fromtimestamp(at_ms / 1000, dt.UTC).strftime("%H:%M:%S")


def line_chart(
    title: str,
    series: Sequence[tuple[str, Sequence[float | None]]],
    *,
    unit: str,
    span: str,
    width: int = 460,
    height: int = 170,
) -> str:
    """An SVG line chart: each series a polyline over the same evenly spaced x axis (gaps
    where a value is None), a y axis from 0 to the largest value, a legend."""
    left, bottom, top = 48, 22, 10
    plot_w, plot_h = width - left - 10, height - bottom - top
    values = [v for _, points in series for v in points if v is not None]
    highest = max(values, default=0.0)
    peak = highest or 1.0
    count = max((len(points) for _, points in series), default=0)
    step = plot_w / max(count - 1, 1)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'role="img" aria-label="{escape(title)}" data-peak="{highest:g}">',
        f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="#fff" '
        'stroke="#d0d7de"/>',
        f'<text x="{left - 4}" y="{top + 10}" text-anchor="end" font-size="10">{peak:.4g}</text>',
        f'<text x="{left - 4}" y="{top + plot_h}" text-anchor="end" font-size="10">0</text>',
        f'<text x="{left}" y="{height - 6}" font-size="10">{escape(span)}</text>',
        f'<text x="{left + plot_w}" y="{height - 6}" text-anchor="end" font-size="10">now</text>',
        f'<text x="4" y="{top + plot_h / 2}" font-size="10">{escape(unit)}</text>',
    ]
    for n, (label, points) in enumerate(series):
        colour = _COLOURS[n % len(_COLOURS)]
        runs: list[list[str]] = [[]]
        for i, value in enumerate(points):
            if value is None:
                runs.append([])
                continue
            x = left + i * step
            y = top + plot_h - (value / peak) * plot_h
            runs[-1].append(f"{x:.1f},{y:.1f}")
        for run in (r for r in runs if r):
            if len(run) == 1:
                cx, cy = run[0].split(",")
                parts.append(f'<circle cx="{cx}" cy="{cy}" r="2.5" fill="{colour}"/>')
            else:
                parts.append(
                    f'<polyline fill="none" stroke="{colour}" stroke-width="2" '
                    f'points="{" ".join(run)}"/>'
                )
        parts.append(
            f'<text x="{left + 8 + 130 * n}" y="{top + 14}" font-size="11" fill="{colour}">'
            f"{escape(label)}</text>"
        )
    parts.append("</svg>")
    return f"<figure><figcaption>{escape(title)}</figcaption>{''.join(parts)}</figure>"


def _charts(history: StatusHistory) -> str:
    buckets: list[Bucket] = history.buckets()
    per_s = history.bucket_ms / 1000.0
    span = f"-{history.window_ms / 60_000:g} min"
    rates = history.throughput(buckets)
    throughput = line_chart(
        f"throughput (events/s, {per_s:g} s buckets)",
        [("published", [p for p, _ in rates]), ("applied", [a for _, a in rates])],
        unit="ev/s", span=span,
    )  # fmt: skip
    if not history.measures_latency:
        latency = (
            "<p class=muted>publish&rarr;apply latency is measured by a consumer: see the "
            "sidecar's page (/status on its health port)</p>"
        )
    else:
        latency = line_chart(
            "publish\u2192apply latency (ms)",
            [("p50", [b.latency(0.5) for b in buckets]),
             ("max", [b.latency(1.0) for b in buckets])],
            unit="ms", span=span,
        )  # fmt: skip
    return f"<div class=charts>{throughput}{latency}</div>"


def _groups(statuses: Sequence[StreamStatus]) -> str:
    rows = []
    for s in statuses:
        if not s.exists or s.problem:
            rows.append(f"<tr><td>{escape(s.key)}</td><td colspan=7 class=bad>"
                        f"{escape(s.problem or '')}</td></tr>")  # fmt: skip
            continue
        for g in s.groups:
            members = ", ".join(
                f"{escape(m.name)} ({m.pending} pending, idle {age(m.idle_s)})" for m in g.members
            )
            flush = (
                f"{escape(g.last_flush_reason)} {age(g.last_flush_age_s)} ago"
                if g.last_flush_reason
                else "-"
            )
            lag = "?" if g.lag is None else str(g.lag)
            rows.append(
                f"<tr><td>{escape(s.key)}</td><td>{escape(g.name)}</td><td>{members or '-'}</td>"
                f"<td class=n>{lag}</td><td class=n>{g.pending}</td>"
                f"<td class=n>{age(g.oldest_pending_age_s)}</td>"
                f"<td class='n{' bad' if g.dlq_depth else ''}'>"
                f"{'?' if g.dlq_depth is None else g.dlq_depth}</td>"
                f"<td>{flush}</td></tr>"
            )
    head = ("<tr><th>stream</th><th>group</th><th>members</th><th>lag</th><th>pending</th>"
            "<th>oldest pending</th><th>dead letters</th><th>last flush</th></tr>")  # fmt: skip
    refused = sorted({c for s in statuses for c in s.refused})
    note = (
        f"<p class=muted id=refused>? : this user may not read it (refused: "
        f"{escape(', '.join(refused))})</p>"
        if refused
        else ""
    )
    return f"<table id=groups>{head}{''.join(rows)}</table>{note}"


def _flushes(marks: Sequence[FlushMark]) -> str:
    if not marks:
        return "<p class=muted>no flush seen yet</p>"
    rows = "".join(
        f"<tr><td>{_when(m.at_ms)}</td><td>{escape(m.group)}</td>"
        f"<td class=bad>{escape(m.reason)}</td><td>{escape(m.source)}</td>"
        f"<td>{escape(', '.join(m.namespaces) or 'scope')}</td><td>{escape(m.detail)}</td></tr>"
        for m in marks
    )
    head = ("<tr><th>at (UTC)</th><th>group</th><th>reason</th><th>by</th><th>namespaces</th>"
            "<th>detail</th></tr>")  # fmt: skip
    return f"<table id=flushes>{head}{rows}</table>"


def _dead_letters(
    letters: Mapping[str, Sequence[DeadLetter]], statuses: Sequence[StreamStatus]
) -> str:
    unknown = sorted({g.name for s in statuses for g in s.groups if g.dlq_depth is None})
    unread = (
        f"<p class=muted>not readable by this user: the dead letters of "
        f"{escape(', '.join(unknown))}</p>"
        if unknown
        else ""
    )
    rows = "".join(
        f"<tr><td>{escape(group)}</td><td>{_when(x.at_ms)}</td><td>{escape(x.entry_id)}</td>"
        f"<td>{escape(x.reason)}</td><td>{x.deliveries}</td>"
        f"<td>{escape(x.event.namespace if x.event else '?')}</td>"
        f"<td>{escape((x.decode_error or x.error)[:160])}</td></tr>"
        for group, some in letters.items()
        for x in some
    )
    if not rows:
        return unread or "<p class=ok>no dead letters</p>"
    head = ("<tr><th>group</th><th>at (UTC)</th><th>entry</th><th>reason</th><th>deliveries</th>"
            "<th>namespace</th><th>error</th></tr>")  # fmt: skip
    return f"<table id=dead-letters>{head}{rows}</table>{unread}"


def render_page(
    statuses: Sequence[StreamStatus],
    history: StatusHistory,
    letters: Mapping[str, Sequence[DeadLetter]],
    *,
    title: str,
    refresh_s: int = 5,
    problem: str | None = None,
) -> str:
    """The whole page; ``problem`` (Redis unreachable, say) is shown above the last data."""
    now = history.now_ms()
    alert = f"<p class=bad id=problem>{escape(problem)}</p>" if problem else ""
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f'<meta http-equiv="refresh" content="{refresh_s}">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head><body>"
        f"<h1>{escape(title)}</h1><p class=muted>at {_when(now)} UTC, "
        f"refreshing every {refresh_s} s</p>{alert}"
        f"<h2>groups</h2>{_groups(statuses)}"
        f"<h2>flushes</h2>{_flushes(history.flushes())}"
        f"<h2>last minutes</h2>{_charts(history)}"
        f"<h2>dead letters</h2>{_dead_letters(letters, statuses)}"
        "</body></html>"
    )
