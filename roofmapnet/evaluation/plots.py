"""Line plots drawn with Pillow (no matplotlib): axes, ticks, grid, legend; precision-recall curves with iso-F
lines, and learning curves (``plot_curves``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from roofmapnet.utils.io import atomic_path

#: Curve colours (the matplotlib "tab10" cycle).
PALETTE: tuple[tuple[int, int, int], ...] = (
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
)
_BACKGROUND = (255, 255, 255)
_AXIS = (0, 0, 0)
_GRID = (222, 222, 222)
_ISO_F = (170, 215, 170)

FontT = ImageFont.FreeTypeFont | ImageFont.ImageFont


def _font(size: int) -> FontT:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: fixed-size bitmap font
        return ImageFont.load_default()


def pr_plot_area(size: tuple[int, int]) -> tuple[int, int, int, int]:
    """Pixel box ``(left, top, right, bottom)`` of the unit square (recall 0..1 → left..right, precision
    0..1 → bottom..top) in a plot of ``size = (width, height)``."""
    width, height = size
    left = max(40, round(0.1 * width))
    right = width - max(15, round(0.03 * width))
    top = max(30, round(0.09 * height))
    bottom = height - max(40, round(0.11 * height))
    return left, top, right, bottom


def _text_size(draw: ImageDraw.ImageDraw, text: str, font: FontT) -> tuple[int, int]:
    x0, y0, x1, y1 = draw.textbbox((0, 0), text, font=font)
    return int(x1 - x0), int(y1 - y0)


def nice_ticks(lo: float, hi: float, target: int = 10) -> np.ndarray:
    """Tick values covering ``[lo, hi]`` at a 1-2-5 × 10^k spacing, about ``target`` intervals."""
    span = hi - lo
    if not span > 0:
        return np.array([lo])
    raw = span / max(1, target)
    magnitude = 10.0 ** np.floor(np.log10(raw))
    step = magnitude * min((m for m in (1.0, 2.0, 2.5, 5.0, 10.0) if m * magnitude >= raw * 0.999), default=10.0)
    first = np.ceil(lo / step - 1e-9) * step
    return np.arange(first, hi + step * 1e-6, step) + 0.0  # + 0.0 turns -0.0 into 0.0


def _tick_label(value: float, step: float) -> str:
    if step >= 1:
        return f"{value:.0f}"
    decimals = max(1, int(-np.floor(np.log10(step) + 1e-9)))
    return f"{value:.{decimals}f}"


def plot_curves(
    curves: Mapping[str, tuple[Any, Any]],
    path: str | Path,
    title: str,
    *,
    x_label: str,
    y_label: str,
    x_range: tuple[float, float] = (0.0, 1.0),
    y_range: tuple[float, float] = (0.0, 1.0),
    size: tuple[int, int] = (800, 600),
    markers: bool = False,
    legend: Literal["lower left", "lower right"] = "lower left",
    underlay: Callable[[ImageDraw.ImageDraw, Callable[[np.ndarray, np.ndarray], np.ndarray], FontT, int], None]
    | None = None,
) -> None:
    """Draw line curves into a PNG (written atomically): grid, ticks, title, axis labels, legend.

    Args:
        curves: ``{legend label: (x, y)}``, points in curve order; values outside the ranges are clipped.
        path: Output ``.png`` path (parents are created).
        title: Plot title.
        x_label, y_label: axis labels.
        x_range, y_range: the axes' extents.
        size: Image ``(width, height)`` in pixels; at least 200×150.
        markers: draw a dot at every point (for curves of few points, e.g. a learning curve).
        legend: where the legend goes (lower left, as L-CNN's PR plots; lower right suits rising curves).
        underlay: draws under the curves, given ``(draw, to_pixels(x, y), font, base font size)``.

    Raises:
        ValueError: If a curve's x and y lengths differ, ``size`` is too small or a range is empty.
    """
    width, height = int(size[0]), int(size[1])
    if width < 200 or height < 150:
        raise ValueError(f"plot size must be at least 200x150 pixels, got {width}x{height}")
    (x0, x1), (y0, y1) = (float(v) for v in x_range), (float(v) for v in y_range)
    if not (x1 > x0 and y1 > y0):
        raise ValueError(f"empty plot range: x {x_range}, y {y_range}")
    data = {}
    for label, (xs, ys) in curves.items():
        x = np.asarray(xs, dtype=np.float64).reshape(-1)
        y = np.asarray(ys, dtype=np.float64).reshape(-1)
        if x.shape != y.shape:
            raise ValueError(
                f"curve {label!r}: {x_label.lower()} has {x.size} points but {y_label.lower()} has {y.size}"
            )
        data[label] = (x, y)

    img = Image.new("RGB", (width, height), _BACKGROUND)
    draw = ImageDraw.Draw(img)
    left, top, right, bottom = pr_plot_area((width, height))
    span_x, span_y = right - left, bottom - top
    base = max(10, round(height / 45))
    font, title_font = _font(base), _font(round(base * 1.35))

    def px(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        u = (np.clip(x, x0, x1) - x0) / (x1 - x0)
        v = (np.clip(y, y0, y1) - y0) / (y1 - y0)
        xy = np.stack([left + u * span_x, bottom - v * span_y], axis=1)
        return np.asarray(np.round(xy), dtype=np.int64)

    # Grid, ticks and tick labels.
    widest = 0
    for axis, (lo, hi) in (("x", (x0, x1)), ("y", (y0, y1))):
        ticks = nice_ticks(lo, hi)
        step = float(ticks[1] - ticks[0]) if ticks.size > 1 else 1.0
        for value in ticks.tolist():
            label = _tick_label(value, step)
            tw, th = _text_size(draw, label, font)
            if axis == "x":
                tx = int(px(np.array([value]), np.array([y0]))[0, 0])
                draw.line([(tx, top), (tx, bottom)], fill=_GRID, width=1)
                draw.line([(tx, bottom), (tx, bottom + 5)], fill=_AXIS, width=1)
                draw.text((tx - tw / 2, bottom + 8), label, fill=_AXIS, font=font)
            else:
                ty = int(px(np.array([x0]), np.array([value]))[0, 1])
                draw.line([(left, ty), (right, ty)], fill=_GRID, width=1)
                draw.line([(left - 5, ty), (left, ty)], fill=_AXIS, width=1)
                draw.text((left - 9 - tw, ty - th / 2 - 2), label, fill=_AXIS, font=font)
                widest = max(widest, tw)

    if underlay is not None:
        underlay(draw, px, font, base)

    # Axes box.
    draw.rectangle([left, top, right, bottom], outline=_AXIS, width=1)

    # Curves (consecutive points falling on the same pixel are merged, so long curves stay cheap).
    for k, (x, y) in enumerate(data.values()):
        if x.size == 0:
            continue
        pts = px(x, y)
        colour = PALETTE[k % len(PALETTE)]
        if markers:
            for cx, cy in pts.tolist():
                draw.ellipse([cx - 4, cy - 4, cx + 4, cy + 4], fill=colour)
        change = np.ones(pts.shape[0], dtype=bool)
        change[1:] = np.any(pts[1:] != pts[:-1], axis=1)
        pts = pts[change]
        if pts.shape[0] == 1:
            cx, cy = pts[0].tolist()
            draw.ellipse([cx - 2, cy - 2, cx + 2, cy + 2], fill=colour)
        else:
            draw.line([tuple(q) for q in pts.tolist()], fill=colour, width=3, joint="curve")

    # Title and axis labels.
    tw, th = _text_size(draw, title, title_font)
    draw.text(((left + right) / 2 - tw / 2, max(2, (top - th) / 2 - 2)), title, fill=_AXIS, font=title_font)
    tw, th = _text_size(draw, x_label, font)
    draw.text(((left + right) / 2 - tw / 2, bottom + 12 + th + 4), x_label, fill=_AXIS, font=font)
    tw, th = _text_size(draw, y_label, font)
    label_img = Image.new("RGB", (tw + 4, th + 8), _BACKGROUND)
    ImageDraw.Draw(label_img).text((2, 0), y_label, fill=_AXIS, font=font)
    label_img = label_img.rotate(90, expand=True)
    img.paste(
        label_img,
        (max(0, left - 9 - widest - label_img.width - 6), (top + bottom) // 2 - label_img.height // 2),
    )

    # Legend.
    if data:
        rows = [(PALETTE[k % len(PALETTE)], label) for k, label in enumerate(data)]
        line_h = base + 8
        box_w = 40 + max(_text_size(draw, label, font)[0] for _, label in rows) + 12
        box_h = len(rows) * line_h + 10
        bx = left + 12 if legend == "lower left" else right - 12 - box_w
        by = bottom - 12 - box_h
        draw.rectangle([bx, by, bx + box_w, by + box_h], fill=_BACKGROUND, outline=(160, 160, 160))
        for i, (colour, label) in enumerate(rows):
            ry = by + 5 + i * line_h + line_h // 2
            draw.line([(bx + 8, ry), (bx + 32, ry)], fill=colour, width=3)
            _, th = _text_size(draw, label, font)
            draw.text((bx + 40, ry - th / 2 - 2), label, fill=_AXIS, font=font)

    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")


def _iso_f_lines(
    draw: ImageDraw.ImageDraw, px: Callable[[np.ndarray, np.ndarray], np.ndarray], font: FontT, base: int
) -> None:
    """The iso-F-score lines F = 0.2 … 0.8 in light green, as L-CNN's plots."""
    r = np.linspace(0.01, 1.0, 200)
    for f in np.linspace(0.2, 0.8, 7):
        with np.errstate(divide="ignore", invalid="ignore"):
            p = f * r / (2 * r - f)
        ok = (p >= 0) & (p <= 1) & (2 * r > f)
        if ok.sum() > 1:
            draw.line([tuple(q) for q in px(r[ok], p[ok]).tolist()], fill=_ISO_F, width=1)
            lx, ly = px(np.array([0.92]), np.array([f * 0.92 / (2 * 0.92 - f)]))[0].tolist()
            draw.text((lx, ly - base - 2), f"f={f:.1f}", fill=_ISO_F, font=font)


def plot_pr_curves(
    curves: Mapping[str, tuple[Any, Any]],
    path: str | Path,
    title: str,
    *,
    size: tuple[int, int] = (800, 600),
    iso_f: bool = True,
) -> None:
    """Draw precision-recall curves into a PNG (written atomically).

    Args:
        curves: ``{legend label: (recall, precision)}``, values as fractions in [0, 1], points in curve order;
            e.g. ``LineAPAccumulator.curves()`` (one curve per θ) or ``HeatmapAPAccumulator.curves()``.
        path: Output ``.png`` path (parents are created).
        title: Plot title.
        size: Image ``(width, height)`` in pixels; at least 200×150.
        iso_f: Draw the iso-F-score lines F = 0.2 … 0.8 in light green, as L-CNN's plots.

    Raises:
        ValueError: If a curve's recall and precision lengths differ or ``size`` is too small.
    """
    plot_curves(
        curves, path, title, x_label="Recall", y_label="Precision", size=size, underlay=_iso_f_lines if iso_f else None
    )
