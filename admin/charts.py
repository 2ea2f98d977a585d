"""Charts as pictures: inline SVG drawn on the server, no scripts, no outside files.

A chart is worked out here as plain shapes (rectangles, lines, text) with their
coordinates; ``templates/_charts.html`` writes them out as SVG, with the chart's title,
a short summary in words (for screen readers and for anyone in a hurry) and the
numbers as a table under 看具体数字.

Three kinds: bars over days or months (stacked, or side by side), lines over days,
and horizontal bars for categories.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

# Colours that stay apart for colour-blind readers and in greyscale print.
PALETTE = ("#0b57a4", "#e08a00", "#8c1d18", "#1e7b34", "#7a4fa0", "#6b7280")
WIDTH = 760
TITLE_Y = 24
LEGEND_Y = 50
FONT = 13


@dataclass(frozen=True)
class Shape:
    tag: str  # rect, line, polyline, circle, text
    attrs: dict[str, Any]
    text: str = ""
    tip: str = ""  # shown on hover (an SVG <title>)


@dataclass(frozen=True)
class Series:
    label: str
    values: Sequence[float]
    colour: str | None = None  # else the palette's next colour


# Colours with a meaning, for series that have one.
GOOD, BAD, NEUTRAL, WARN = "#1e7b34", "#b3261e", "#0b57a4", "#e08a00"


def _colour(series: Series, index: int) -> str:
    return series.colour or PALETTE[index % len(PALETTE)]


@dataclass
class Chart:
    id: str
    title: str
    summary: str
    width: int
    height: int
    shapes: list[Shape] = field(default_factory=list)
    table_head: list[str] = field(default_factory=list)
    table_rows: list[list[str]] = field(default_factory=list)
    empty: bool = False


def text_width(text: str, size: float = FONT) -> float:
    """About how wide ``text`` is drawn: a Chinese character is about one em."""
    return sum(size if ord(ch) > 0x2E80 else size * 0.6 for ch in text)


def nice_ticks(top: float, most: int = 5) -> list[float]:
    """0 and round steps (1, 2, 5 x 10^n) up to at least ``top``."""
    if top <= 0:
        return [0, 1]
    raw = top / most
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    step = max(step, 1) if top >= 1 else step
    count = math.ceil(top / step)
    return [round(i * step, 6) for i in range(count + 1)]


def number(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"


def day_label(day: date) -> str:
    return f"{day.month}/{day.day}"


def day_words(day: date) -> str:
    return f"{day.month}月{day.day}日"


def _frame(chart: Chart, series: Sequence[Series], left: float, top: float) -> None:
    chart.shapes.append(Shape("text", {"x": 8, "y": TITLE_Y, "class": "chart-title"},
                              chart.title))
    x = left
    for index, s in enumerate(series):
        colour = _colour(s, index)
        chart.shapes.append(Shape("rect", {"x": x, "y": LEGEND_Y - 11, "width": 14,
                                           "height": 14, "fill": colour}))
        chart.shapes.append(Shape("text", {"x": x + 19, "y": LEGEND_Y, "class": "chart-legend"},
                                  s.label))
        x += 19 + text_width(s.label) + 22


def _y_axis(chart: Chart, ticks: list[float], left: float, right: float, top: float,
            bottom: float, label: str) -> None:
    span = ticks[-1] or 1
    for tick in ticks:
        y = bottom - (bottom - top) * tick / span
        chart.shapes.append(Shape("line", {"x1": left, "x2": right, "y1": y, "y2": y,
                                           "class": "chart-grid" if tick else "chart-axis"}))
        chart.shapes.append(Shape("text", {"x": left - 6, "y": y + 4, "text-anchor": "end",
                                           "class": "chart-tick"}, number(tick)))
    chart.shapes.append(Shape("text", {"x": 8, "y": top - 12, "class": "chart-axis-title"},
                              label))


def _x_labels(chart: Chart, labels: Sequence[str], left: float, band: float, bottom: float,
              x_title: str, right: float) -> None:
    widest = max((text_width(label, 12) for label in labels), default=0) + 10
    every = max(1, math.ceil(widest / band)) if band else 1
    last = len(labels) - 1
    for index, label in enumerate(labels):
        # every n-th label, always the last; skip one too close to the last
        if index != last and (index % every or last - index < every):
            continue
        x = left + band * (index + 0.5)
        chart.shapes.append(Shape("line", {"x1": x, "x2": x, "y1": bottom,
                                           "y2": bottom + 4, "class": "chart-axis"}))
        chart.shapes.append(Shape("text", {"x": x, "y": bottom + 18, "text-anchor": "middle",
                                           "class": "chart-tick"}, label))
    chart.shapes.append(Shape("text", {"x": (left + right) / 2, "y": bottom + 40,
                                       "text-anchor": "middle", "class": "chart-axis-title"},
                              x_title))


def _table(chart: Chart, first_column: str, labels: Sequence[str],
           series: Sequence[Series]) -> None:
    chart.table_head = [first_column, *(s.label for s in series)]
    chart.table_rows = [[label, *(number(s.values[i]) for s in series)]
                        for i, label in enumerate(labels)]


def bar_chart(chart_id: str, title: str, summary: str, labels: Sequence[str],
              series: Sequence[Series], *, y_label: str, x_label: str,
              table_labels: Sequence[str] | None = None, stacked: bool = True,
              height: int = 320) -> Chart:
    """Vertical bars, one group per label (a day, a month), stacked or side by side."""
    chart = Chart(chart_id, title, summary, WIDTH, height)
    left, right, top, bottom = 64.0, WIDTH - 16.0, 82.0, height - 50.0
    _frame(chart, series, left, top)
    n = max(len(labels), 1)
    if stacked:
        peak = max((sum(s.values[i] for s in series) for i in range(len(labels))), default=0)
    else:
        peak = max((v for s in series for v in s.values), default=0)
    chart.empty = peak == 0
    ticks = nice_ticks(peak)
    _y_axis(chart, ticks, left, right, top, bottom, y_label)
    band = (right - left) / n
    scale = (bottom - top) / (ticks[-1] or 1)
    tip_labels = table_labels or labels
    for i in range(len(labels)):
        base = bottom
        for index, s in enumerate(series):
            value = s.values[i]
            if not value:
                continue
            colour = _colour(s, index)
            h = value * scale
            if stacked:
                width = band * 0.72
                x = left + band * i + (band - width) / 2
                y = base - h
                base = y
            else:
                width = band * 0.8 / len(series)
                x = left + band * i + band * 0.1 + width * index
                y = bottom - h
            chart.shapes.append(Shape(
                "rect", {"x": round(x, 2), "y": round(y, 2), "width": round(width, 2),
                         "height": round(h, 2), "fill": colour},
                tip=f"{tip_labels[i]} {s.label}：{number(value)}"))
    _x_labels(chart, labels, left, band, bottom, x_label, right)
    if chart.empty:
        chart.shapes.append(Shape("text", {"x": (left + right) / 2, "y": (top + bottom) / 2,
                                           "text-anchor": "middle", "class": "chart-empty"},
                                  "这段时间没有数据"))
    _table(chart, x_label, tip_labels, series)
    return chart


def line_chart(chart_id: str, title: str, summary: str, labels: Sequence[str],
               series: Sequence[Series], *, y_label: str, x_label: str,
               table_labels: Sequence[str] | None = None, height: int = 320) -> Chart:
    """One line per series over the labels (days), with a dot on each value."""
    chart = Chart(chart_id, title, summary, WIDTH, height)
    left, right, top, bottom = 64.0, WIDTH - 16.0, 82.0, height - 50.0
    _frame(chart, series, left, top)
    n = max(len(labels), 1)
    peak = max((v for s in series for v in s.values), default=0)
    chart.empty = peak == 0
    ticks = nice_ticks(peak)
    _y_axis(chart, ticks, left, right, top, bottom, y_label)
    band = (right - left) / n
    scale = (bottom - top) / (ticks[-1] or 1)
    tip_labels = table_labels or labels
    for index, s in enumerate(series):
        colour = _colour(s, index)
        points = [(round(left + band * (i + 0.5), 2), round(bottom - v * scale, 2))
                  for i, v in enumerate(s.values)]
        chart.shapes.append(Shape("polyline", {
            "points": " ".join(f"{x},{y}" for x, y in points), "fill": "none",
            "stroke": colour, "stroke-width": 2.5,
            "stroke-dasharray": "6 3" if index % 2 else None}))
        for i, (x, y) in enumerate(points):
            chart.shapes.append(Shape("circle", {"cx": x, "cy": y, "r": 3.2, "fill": colour},
                                      tip=f"{tip_labels[i]} {s.label}：{number(s.values[i])}"))
    _x_labels(chart, labels, left, band, bottom, x_label, right)
    if chart.empty:
        chart.shapes.append(Shape("text", {"x": (left + right) / 2, "y": (top + bottom) / 2,
                                           "text-anchor": "middle", "class": "chart-empty"},
                                  "这段时间没有数据"))
    _table(chart, x_label, tip_labels, series)
    return chart


def hbar_chart(chart_id: str, title: str, summary: str, items: Sequence[tuple[str, float]],
               *, x_label: str, first_column: str) -> Chart:
    """Horizontal bars, one per category, largest first, the value at the bar's end."""
    row = 30
    label_width = max((text_width(label) for label, _ in items), default=60)
    left = min(max(label_width + 20, 100), 330)
    top = 52.0
    bottom = top + row * max(len(items), 1)
    height = int(bottom + 50)
    chart = Chart(chart_id, title, summary, WIDTH, height)
    chart.shapes.append(Shape("text", {"x": 8, "y": TITLE_Y, "class": "chart-title"}, title))
    right = WIDTH - 60.0
    peak = max((v for _, v in items), default=0)
    chart.empty = peak == 0
    ticks = nice_ticks(peak)
    scale = (right - left) / (ticks[-1] or 1)
    for tick in ticks:
        x = left + tick * scale
        chart.shapes.append(Shape("line", {"x1": x, "x2": x, "y1": top, "y2": bottom,
                                           "class": "chart-grid" if tick else "chart-axis"}))
        chart.shapes.append(Shape("text", {"x": x, "y": bottom + 18, "text-anchor": "middle",
                                           "class": "chart-tick"}, number(tick)))
    for i, (label, value) in enumerate(items):
        y = top + row * i
        chart.shapes.append(Shape("text", {"x": left - 8, "y": y + row / 2 + 5,
                                           "text-anchor": "end", "class": "chart-label"},
                                  label))
        width = value * scale
        chart.shapes.append(Shape("rect", {"x": left, "y": y + 5, "width": round(width, 2),
                                           "height": row - 10, "fill": PALETTE[0]},
                                  tip=f"{label}：{number(value)}"))
        chart.shapes.append(Shape("text", {"x": left + width + 6, "y": y + row / 2 + 5,
                                           "class": "chart-value"}, number(value)))
    chart.shapes.append(Shape("text", {"x": (left + right) / 2, "y": bottom + 40,
                                       "text-anchor": "middle", "class": "chart-axis-title"},
                              x_label))
    if chart.empty:
        chart.shapes.append(Shape("text", {"x": (left + right) / 2, "y": (top + bottom) / 2,
                                           "text-anchor": "middle", "class": "chart-empty"},
                                  "这段时间没有数据"))
    chart.table_head = [first_column, x_label]
    chart.table_rows = [[label, number(value)] for label, value in items]
    return chart
