"""Line charts as inline SVG, drawn on the server: no JavaScript library, no build step, and
a page that shows its charts even with scripts off."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime

from markupsafe import Markup, escape

WIDTH, HEIGHT = 600, 170
LEFT, RIGHT, TOP, BOTTOM = 48, 8, 10, 22  # margins for the axis labels


def human(value: float, unit: str = "") -> str:
    """A short number: 0.42, 12.3, 4.1k, 2.3M, 1.2G (binary prefixes for bytes)."""
    if unit in {"B", "B/s"}:
        for prefix in ("", "Ki", "Mi", "Gi", "Ti"):
            if abs(value) < 1024 or prefix == "Ti":
                return f"{value:.3g} {prefix}{unit}"
            value /= 1024
    magnitude = abs(value)
    text = (
        f"{value / 1e9:.3g}G"
        if magnitude >= 1e9
        else f"{value / 1e6:.3g}M"
        if magnitude >= 1e6
        else f"{value / 1e3:.3g}k"
        if magnitude >= 1e4
        else f"{value:.3g}"
    )
    return f"{text}{unit if unit == '%' else (' ' + unit if unit else '')}"


def _time_label(at: int, span: int) -> str:
    moment = datetime.fromtimestamp(at, UTC)
    return moment.strftime(
        "%H:%M" if span <= 86400 else "%m-%d %H:%M" if span <= 7 * 86400 else "%m-%d"
    )


def render_chart(
    points: Sequence[tuple[int, float]],
    since: int,
    until: int,
    step: int,
    title: str,
    unit: str = "",
    metric: str = "",
) -> Markup:
    """An SVG line chart of (unix time, value) points over [since, until]; gaps longer than
    three steps (or 15 minutes) break the line, so an outage shows as a gap, not a slope."""
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    span = max(until - since, 1)
    label = escape(title)
    head = (
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{label}" data-metric="{escape(metric)}" data-points="{len(points)}" '
        'preserveAspectRatio="none" xmlns="http://www.w3.org/2000/svg">'
    )
    if not points:
        body = (
            f'<text x="{WIDTH / 2}" y="{HEIGHT / 2}" text-anchor="middle" class="empty">'
            "no samples in this window</text>"
        )
        return Markup(head + body + "</svg>")
    values = [v for _, v in points]
    low, high = min(values), max(values)
    if unit == "%":
        low, high = min(low, 0.0), max(high, 100.0)
    elif low >= 0:
        low = 0.0
    if math.isclose(low, high):
        high = low + 1.0

    def x(at: int) -> float:
        return LEFT + (at - since) / span * plot_w

    def y(value: float) -> float:
        return TOP + (1 - (value - low) / (high - low)) * plot_h

    gap = max(3 * step, 900)
    parts, previous = [], None
    for at, value in points:
        command = "M" if previous is None or at - previous > gap else "L"
        parts.append(f"{command}{x(at):.1f},{y(value):.1f}")
        previous = at
    last_at, last_value = points[-1]
    grid = "".join(
        f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(v):.1f}" y2="{y(v):.1f}"/>'
        f'<text class="axis" x="{LEFT - 4}" y="{y(v) + 4:.1f}" text-anchor="end">'
        f"{escape(human(v, unit if unit == '%' else ''))}</text>"
        for v in (low, (low + high) / 2, high)
    )
    times = (
        f'<text class="axis" x="{LEFT}" y="{HEIGHT - 6}">{_time_label(since, span)}</text>'
        f'<text class="axis" x="{WIDTH - RIGHT}" y="{HEIGHT - 6}" text-anchor="end">'
        f"{_time_label(until, span)}</text>"
    )
    line = f'<path class="line" d="{" ".join(parts)}"/>'
    dot = f'<circle class="dot" cx="{x(last_at):.1f}" cy="{y(last_value):.1f}" r="3"/>'
    tip = f"<title>{label}: last {escape(human(last_value, unit))}</title>"
    return Markup(head + tip + grid + times + line + dot + "</svg>")


def render_sparkline(values: Sequence[float], width: int = 80, height: int = 18) -> Markup:
    """A tiny line without axes (for tables)."""
    if len(values) < 2:
        return Markup("")
    low, high = min(values), max(values)
    high = high if high > low else low + 1
    step = width / (len(values) - 1)
    points = " ".join(
        f"{i * step:.1f},{height - (v - low) / (high - low) * height:.1f}"
        for i, v in enumerate(values)
    )
    return Markup(
        f'<svg class="spark" viewBox="0 0 {width} {height}" width="{width}" height="{height}">'
        f'<polyline points="{points}"/></svg>'
    )
