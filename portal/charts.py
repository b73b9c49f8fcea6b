"""Server-side SVG charts of the 售后分析 dashboard: a bar chart with benchmark marks, a line chart with a
threshold line, and a word cloud. No chart library and nothing fetched by the browser (no CDN): the markup
is made here and inlined in the page, so it also prints and reads without JavaScript.

The builders are presentation only. Callers pass text that is already translated and formatted (labels,
values with their unit) and say which bars are worse than their benchmark; the builders lay things out,
escape every piece of text and return SafeStrings. Each chart is one ``<svg role="img">`` with an
``aria-label`` and a ``<title>`` (and a ``<title>`` per mark for pointer users); the page also shows the
same figures as tables. Fonts: the CJK families first, so Chinese renders as glyphs on Linux (WenQuanYi),
macOS (PingFang) and Windows (YaHei) alike.
"""

from __future__ import annotations

import math
import unicodedata
from dataclasses import dataclass

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

FONT_FAMILY = "'WenQuanYi Micro Hei', 'Noto Sans CJK SC', 'PingFang SC', 'Microsoft YaHei', sans-serif"
SVG_NS = "http://www.w3.org/2000/svg"

INK = "#1f2933"
MUTED = "#52606d"
GRID = "#d9e2ec"
GOOD = "#2f7d5b"
NEUTRAL = "#3e6fb0"
BAD = "#c62828"
# Word colours, dark enough for 4.5:1 on white.
CLOUD_COLOURS = ("#1d4e89", "#b03a2e", "#1e6b52", "#7d3c98", "#8a5a00", "#2c5f7c")


def text_width(text: str, size: float) -> float:
    """A generous estimate of the rendered width (no font metrics on the server): wide (CJK) characters are
    one em, capitals and digits 0.68 em, other letters 0.6 em, spaces and narrow punctuation 0.38 em."""
    total = 0.0
    for char in text:
        if unicodedata.east_asian_width(char) in ("W", "F"):
            total += 1.0
        elif char.isupper() or char.isdigit() or char in "%&@#MW":
            total += 0.68
        elif char in " .,:;'|!il()[]/-·":
            total += 0.38
        else:
            total += 0.6
    return total * size


def _fit(text: str, size: float, width: float) -> str:
    """The text, cut with an ellipsis to fit ``width`` (the full text stays in the mark's <title>)."""
    if text_width(text, size) <= width:
        return text
    while text and text_width(text + "…", size) > width:
        text = text[:-1]
    return text + "…"


def _svg(width: int, height: int, label: str, body: list[str], css_class: str) -> SafeString:
    title = escape(label)
    return mark_safe(  # noqa: S308 - every piece of text above went through escape()
        f'<svg xmlns="{SVG_NS}" class="chart {css_class}" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" aria-label="{title}" '
        f'font-family="{FONT_FAMILY}" font-size="13" fill="{INK}">'
        f"<title>{title}</title>{''.join(body)}</svg>"
    )


def _num(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".") if value != int(value) else str(int(value))


# --- bar chart with benchmark marks ------------------------------------------------------------------------
@dataclass(frozen=True)
class Bar:
    label: str
    value: float | None  # None: no figure (e.g. no units sold sent); ``value_text`` says why
    value_text: str
    benchmark: float | None = None
    benchmark_text: str = ""
    worse: bool = False  # worse than the benchmark: drawn red


def bar_chart(bars: list[Bar], *, label: str, width: int = 620) -> SafeString:
    """Horizontal bars, one row per item; a benchmark is a dark tick across its row, labelled on the right."""
    row, top, label_w = 40, 10, min(200.0, max((text_width(b.label, 13) for b in bars), default=60) + 12)
    right = 150  # room for "12.5 % · ≤ 12.4 %"
    plot_w = width - label_w - right
    peak = max([b.value or 0 for b in bars] + [b.benchmark or 0 for b in bars] + [1.0]) * 1.1
    height = top * 2 + row * max(len(bars), 1)
    body = [f'<line x1="{label_w:.1f}" y1="{top}" x2="{label_w:.1f}" y2="{height - top}" stroke="{GRID}"/>']
    for i, bar in enumerate(bars):
        y = top + i * row
        mid = y + row / 2
        name = escape(_fit(bar.label, 13, label_w - 12))
        body.append(f'<text x="{label_w - 8:.1f}" y="{mid + 4.5:.1f}" text-anchor="end">{name}</text>')
        note = bar.value_text + (f" · {bar.benchmark_text}" if bar.benchmark_text else "")
        if bar.value is not None:
            length = max(bar.value / peak * plot_w, 1.5)
            colour = BAD if bar.worse else (GOOD if bar.benchmark is not None else NEUTRAL)
            body.append(f'<rect class="bar{" worse" if bar.worse else ""}" x="{label_w:.1f}" y="{mid - 9:.1f}" '
                        f'width="{length:.1f}" height="18" rx="2" fill="{colour}">'
                        f"<title>{escape(bar.label)}: {escape(note)}</title></rect>")
        if bar.benchmark is not None:
            bx = label_w + bar.benchmark / peak * plot_w
            body.append(f'<line class="benchmark" x1="{bx:.1f}" y1="{y + 5}" x2="{bx:.1f}" y2="{y + row - 5}" '
                        f'stroke="{INK}" stroke-width="2" stroke-dasharray="4 2">'
                        f"<title>{escape(bar.benchmark_text)}</title></line>")
        fill = BAD if bar.worse else (INK if bar.value is not None else MUTED)
        body.append(f'<text x="{label_w + plot_w + 8:.1f}" y="{mid + 4.5:.1f}" fill="{fill}">'
                    f"{escape(_fit(note, 13, right - 10))}</text>")
    return _svg(width, height, label, body, "bar-chart")


# --- line chart with a threshold line ---------------------------------------------------------------------
@dataclass(frozen=True)
class Threshold:
    value: float
    label: str


def line_chart(points: list[tuple[str, float]], *, label: str, series_label: str,
               thresholds: list[Threshold] = (), y_max: float = 5.0, width: int = 620,
               height: int = 240) -> SafeString:
    """One series (x labels are short dates), y from just under the lowest point or threshold to ``y_max``;
    each threshold is a dashed red line labelled at its right end; at most 8 x labels, so they never collide."""
    left, right, top, bottom = 44, 120, 14, 30
    plot_w, plot_h = width - left - right, height - top - bottom
    values = [v for _x, v in points] + [t.value for t in thresholds]
    y_min = math.floor((min(values, default=y_max) - 0.2) * 5) / 5  # a 0.2 grid under the lowest value
    y_min = min(y_min, y_max - 0.4)
    span = y_max - y_min

    def ypos(value: float) -> float:
        return top + (y_max - value) / span * plot_h

    def xpos(i: int) -> float:
        return left + (plot_w * i / (len(points) - 1) if len(points) > 1 else plot_w / 2)

    body = []
    steps = 4
    for k in range(steps + 1):
        value = y_min + span * k / steps
        y = ypos(value)
        body.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" stroke="{GRID}"/>'
                    f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11" fill="{MUTED}">'
                    f"{value:.1f}</text>")
    every = max(1, math.ceil(len(points) / 8))
    for i, (x_label, _value) in enumerate(points):
        if i % every == 0:
            body.append(f'<text x="{xpos(i):.1f}" y="{height - 10}" text-anchor="middle" font-size="11" '
                        f'fill="{MUTED}">{escape(x_label)}</text>')
    for threshold in thresholds:
        y = ypos(threshold.value)
        body.append(f'<line class="threshold" x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" '
                    f'stroke="{BAD}" stroke-width="1.5" stroke-dasharray="6 4"/>'
                    f'<text x="{left + plot_w + 6}" y="{y + 4:.1f}" fill="{BAD}" font-size="12">'
                    f"{escape(_fit(threshold.label, 12, right - 8))}</text>")
    if points:
        path = " ".join(f"{'M' if i == 0 else 'L'}{xpos(i):.1f},{ypos(v):.1f}" for i, (_x, v) in enumerate(points))
        body.append(f'<path class="series" d="{path}" fill="none" stroke="{NEUTRAL}" stroke-width="2.5"/>')
        floor = min((t.value for t in thresholds), default=None)
        for i, (x_label, value) in enumerate(points):
            below = floor is not None and value < floor
            body.append(f'<circle cx="{xpos(i):.1f}" cy="{ypos(value):.1f}" r="3.5" '
                        f'fill="{BAD if below else NEUTRAL}"><title>{escape(series_label)} · {escape(x_label)}: '
                        f"{value:.2f}</title></circle>")
    return _svg(width, height, label, body, "line-chart")


# --- word cloud ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Word:
    text: str
    count: int
    title: str = ""  # the mark's tooltip, e.g. "色差: 12 (34 %)"


@dataclass(frozen=True)
class Placed:
    word: Word
    size: float
    x: float  # box left
    y: float  # box top
    w: float
    h: float
    colour: str

    def overlaps(self, other: Placed, gap: float = 3.0) -> bool:
        return not (self.x + self.w + gap <= other.x or other.x + other.w + gap <= self.x
                    or self.y + self.h + gap <= other.y or other.y + other.h + gap <= self.y)


def layout_cloud(words: list[Word], *, width: int = 620, height: int = 280, min_size: float = 13,
                 max_size: float = 44, label_max: int = 24) -> list[Placed]:
    """Deterministic: the most frequent word first, in the centre; each next one walks an Archimedean spiral
    out from the centre until its box fits inside the area without touching a placed box. Font size grows
    with the square root of the count. A word that fits nowhere is tried smaller, then left out (the table
    beside the cloud still lists it)."""
    ordered = sorted(words, key=lambda w: (-w.count, w.text))
    if not ordered:
        return []
    low, high = math.sqrt(ordered[-1].count), math.sqrt(ordered[0].count)
    placed: list[Placed] = []
    cx, cy, aspect = width / 2, height / 2, width / height
    for rank, word in enumerate(ordered):
        scale = (math.sqrt(word.count) - low) / (high - low) if high > low else 1.0
        size = min_size + (max_size - min_size) * scale
        text = word.text if len(word.text) <= label_max else word.text[:label_max - 1] + "…"
        while size >= min_size:
            spot = _spiral_spot(text, size, placed, width, height, cx, cy, aspect)
            if spot is not None:
                x, y, w, h = spot
                placed.append(Placed(Word(text, word.count, word.title or word.text), size, x, y, w, h,
                                     CLOUD_COLOURS[rank % len(CLOUD_COLOURS)]))
                break
            size *= 0.8
    return placed


def _spiral_spot(text, size, placed, width, height, cx, cy, aspect):
    w, h = text_width(text, size) + 4, size * 1.25
    if w > width or h > height:
        return None
    theta, limit = 0.0, math.hypot(width, height) / 2
    while True:
        radius = 1.8 * theta
        if radius > limit:
            return None
        x, y = cx + radius * math.cos(theta) * aspect ** 0.5 - w / 2, cy + radius * math.sin(theta) - h / 2
        if x >= 0 and y >= 0 and x + w <= width and y + h <= height:
            box = Placed(Word(text, 0), size, x, y, w, h, "")
            if not any(box.overlaps(other) for other in placed):
                return x, y, w, h
        theta += 3.0 / max(radius, 3.0)


def word_cloud(words: list[Word], *, label: str, width: int = 620, height: int = 280) -> SafeString:
    """The cloud of ``layout_cloud``: each word centred in its box, its count in the tooltip."""
    body = []
    for item in layout_cloud(words, width=width, height=height):
        body.append(f'<text class="word" x="{item.x + item.w / 2:.1f}" y="{item.y + item.size * 0.98:.1f}" '
                    f'text-anchor="middle" font-size="{item.size:.1f}" fill="{item.colour}" '
                    f'data-count="{item.word.count}">{escape(item.word.text)}'
                    f"<title>{escape(item.word.title)}</title></text>")
    return _svg(width, height, label, body, "word-cloud")
