"""The long-tail chart of ``datakit stats --plot``: pixels and images per class, sorted, drawn with PIL.

Drawn from the ``stats --json`` records, so the picture and the numbers never disagree. Each split
gets one panel per measure (pixels per class for mask splits, images per class always), bars
sorted from the most to the least frequent class, a log scale when the counts span more than two
decades, the head and tail classes named, and the absent classes listed underneath.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from typing import Any

from PIL import Image, ImageDraw, ImageFont

WIDTH = 1100
PLOT_W = 960
PLOT_H = 220
LEFT = 80
TITLE_H = 22
FOOT_H = 30
LINE_H = 14
ABSENT_LINES = 6
BAR = (52, 101, 164)
GRID = (220, 220, 220)
INK = (0, 0, 0)
LOG_SPAN = 100.0  # counts spanning more than this ratio get a log axis


@dataclass
class Panel:
    """One bar chart: which measure, its axis, and the box of every bar (class id -> x0, y0, x1, y1)."""

    split: str
    measure: str
    log: bool
    box: tuple[int, int, int, int]
    bars: list[tuple[int, int, tuple[int, int, int, int]]] = field(default_factory=list)  # (id, value, rect)


@dataclass
class Chart:
    image: Image.Image
    panels: list[Panel]

    def png(self) -> bytes:
        buf = io.BytesIO()
        self.image.save(buf, format="PNG")
        return buf.getvalue()


def _series(record: dict[str, Any], measure: str) -> list[tuple[int, str, int]]:
    """(id, name, count) of the classes present, most frequent first (the ignore id is not a class)."""
    key = "class_pixels" if measure == "pixels" else "class_images"
    rows = [(c["id"], c["name"], int(c[measure])) for c in record.get(key, [])
            if c["id"] != record.get("ignore_id") and int(c[measure]) > 0]
    return sorted(rows, key=lambda r: (-r[2], r[0]))


def _scale(values: list[int]) -> tuple[bool, float, float]:
    """(log?, lowest, highest) of the y axis."""
    top, low = max(values), min(values)
    if top / max(low, 1) > LOG_SPAN:
        return True, float(10 ** math.floor(math.log10(low))), float(10 ** math.ceil(math.log10(top)))
    return False, 0.0, float(top)


def _y(value: float, log: bool, lo: float, hi: float) -> float:
    """Fraction of the plot height (0 bottom, 1 top)."""
    if log:
        return (math.log10(max(value, lo)) - math.log10(lo)) / max(math.log10(hi) - math.log10(lo), 1e-9)
    return value / hi if hi else 0.0


def _ticks(log: bool, lo: float, hi: float) -> list[float]:
    if log:
        return [10.0 ** k for k in range(int(round(math.log10(lo))), int(round(math.log10(hi))) + 1)]
    return [hi * k / 4 for k in range(5)]


def _label(value: float) -> str:
    return f"{value:.3g}".replace("e+0", "e").replace("e+", "e") if value >= 10_000 else f"{value:,.0f}"


def _panel(draw: ImageDraw.ImageDraw, top: int, split: str, measure: str,
           series: list[tuple[int, str, int]], font: Any) -> Panel:
    log, lo, hi = _scale([v for _, _, v in series])
    x0, y0, x1, y1 = LEFT, top + TITLE_H, LEFT + PLOT_W, top + TITLE_H + PLOT_H
    panel = Panel(split, measure, log, (x0, y0, x1, y1))
    draw.text((x0, top + 4), f"{split}: {measure} per class, {len(series)} classes, sorted"
              + (" (log scale)" if log else ""), fill=INK, font=font)
    for tick in _ticks(log, lo, hi):
        y = round(y1 - _y(tick, log, lo, hi) * PLOT_H)
        draw.line([x0, y, x1, y], fill=GRID)
        draw.text((4, y - 6), _label(tick), fill=INK, font=font)
    n = len(series)
    for i, (cid, _name, value) in enumerate(series):
        bx0 = x0 + (i * PLOT_W) // n
        bx1 = max(bx0, x0 + ((i + 1) * PLOT_W) // n - (2 if n <= PLOT_W // 4 else 1))
        by0 = min(y1 - 1, round(y1 - _y(value, log, lo, hi) * PLOT_H))
        draw.rectangle([bx0, by0, bx1, y1 - 1], fill=BAR)
        panel.bars.append((cid, value, (bx0, by0, bx1, y1 - 1)))
    draw.line([x0, y1, x1, y1], fill=INK)
    draw.line([x0, y0, x0, y1], fill=INK)
    head = ", ".join(f"{name} {_label(v)}" for _, name, v in series[:4])
    tail = ", ".join(f"{name} {_label(v)}" for _, name, v in series[-3:]) if n > 4 else ""
    draw.text((x0, y1 + 4), f"most: {head}" + (f"   least: {tail}" if tail else ""), fill=INK, font=font)
    return panel


def _wrap(text: str, width: int) -> list[str]:
    lines, line = [], ""
    for word in text.split(", "):
        piece = word if not line else f"{line}, {word}"
        if len(piece) > width and line:
            lines.append(line + ",")
            line = word
        else:
            line = piece
    return lines + ([line] if line else [])


def _absent_lines(record: dict[str, Any]) -> list[str]:
    absent = record.get("absent_classes", [])
    if not record.get("class_count"):
        return []
    head = f"absent: {len(absent)} of {record['class_count']} classes never appear"
    if not absent:
        return [head]
    lines = _wrap(", ".join(f"{c['id']} {c['name']}" for c in absent), 170)
    if len(lines) > ABSENT_LINES:
        lines = lines[:ABSENT_LINES] + [f"... ({len(absent)} in all; see stats --json)"]
    return [head + ":"] + lines


def long_tail_chart(records: list[dict[str, Any]]) -> Chart:
    """The chart of every split in ``records`` (the ``stats --json`` list), stacked vertically."""
    font = ImageFont.load_default()
    plan = []
    for r in records:
        measures = [m for m in ("pixels", "images") if _series(r, m)]
        plan.append((r, measures, _absent_lines(r)))
    height = 8 + sum(len(ms) * (TITLE_H + PLOT_H + FOOT_H) + LINE_H * (len(ab) + 1) + 10 for _, ms, ab in plan)
    image = Image.new("RGB", (WIDTH, max(height, 60)), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    panels, top = [], 8
    for r, measures, absent in plan:
        if not measures:
            draw.text((LEFT, top), f"{r['split']}: no class labels to count", fill=INK, font=font)
        for m in measures:
            panels.append(_panel(draw, top, r["split"], m, _series(r, m), font))
            top += TITLE_H + PLOT_H + FOOT_H
        for line in absent:
            draw.text((LEFT, top), line, fill=INK, font=font)
            top += LINE_H
        top += LINE_H + 10
    return Chart(image, panels)
