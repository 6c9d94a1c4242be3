"""Sparklines: a series of numbers as one line of block characters (ASCII when the terminal
cannot show them)."""

from __future__ import annotations

from collections.abc import Sequence

BLOCKS = "▁▂▃▄▅▆▇█"
ASCII = "_.-:=+*#"


def sparkline(values: Sequence[float], width: int = 60, unicode: bool = True) -> str:
    """`values` squeezed into at most `width` characters (each the mean of its bucket),
    scaled between their minimum and maximum."""
    if not values:
        return ""
    buckets = bucket_means(values, width)
    low, high = min(buckets), max(buckets)
    marks = BLOCKS if unicode else ASCII
    if high == low:
        return marks[len(marks) // 2 if high else 0] * len(buckets)
    scale = (len(marks) - 1) / (high - low)
    return "".join(marks[round((value - low) * scale)] for value in buckets)


def bucket_means(values: Sequence[float], count: int) -> list[float]:
    """`values` in at most `count` consecutive buckets of (nearly) equal size, each its mean."""
    if len(values) <= count:
        return list(values)
    result = []
    for index in range(count):
        start = index * len(values) // count
        end = max((index + 1) * len(values) // count, start + 1)
        chunk = values[start:end]
        result.append(sum(chunk) / len(chunk))
    return result
