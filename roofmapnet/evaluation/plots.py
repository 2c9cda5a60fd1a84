"""Precision-recall curve plots drawn with Pillow (no matplotlib): axes, ticks, grid, iso-F lines, legend."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

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
    width, height = int(size[0]), int(size[1])
    if width < 200 or height < 150:
        raise ValueError(f"plot size must be at least 200x150 pixels, got {width}x{height}")
    data = {}
    for label, (rec, prec) in curves.items():
        r = np.asarray(rec, dtype=np.float64).reshape(-1)
        p = np.asarray(prec, dtype=np.float64).reshape(-1)
        if r.shape != p.shape:
            raise ValueError(f"curve {label!r}: recall has {r.size} points but precision has {p.size}")
        data[label] = (r, p)

    img = Image.new("RGB", (width, height), _BACKGROUND)
    draw = ImageDraw.Draw(img)
    left, top, right, bottom = pr_plot_area((width, height))
    span_x, span_y = right - left, bottom - top
    base = max(10, round(height / 45))
    font, title_font = _font(base), _font(round(base * 1.35))

    def px(r: np.ndarray, p: np.ndarray) -> np.ndarray:
        xy = np.stack([left + np.clip(r, 0, 1) * span_x, bottom - np.clip(p, 0, 1) * span_y], axis=1)
        return np.asarray(np.round(xy), dtype=np.int64)

    # Grid, ticks and tick labels.
    for i in range(11):
        v = i / 10
        x = round(left + v * span_x)
        y = round(bottom - v * span_y)
        draw.line([(x, top), (x, bottom)], fill=_GRID, width=1)
        draw.line([(left, y), (right, y)], fill=_GRID, width=1)
        draw.line([(x, bottom), (x, bottom + 5)], fill=_AXIS, width=1)
        draw.line([(left - 5, y), (left, y)], fill=_AXIS, width=1)
        label = f"{v:.1f}"
        tw, th = _text_size(draw, label, font)
        draw.text((x - tw / 2, bottom + 8), label, fill=_AXIS, font=font)
        draw.text((left - 9 - tw, y - th / 2 - 2), label, fill=_AXIS, font=font)

    if iso_f:
        r = np.linspace(0.01, 1.0, 200)
        for f in np.linspace(0.2, 0.8, 7):
            with np.errstate(divide="ignore", invalid="ignore"):
                p = f * r / (2 * r - f)
            ok = (p >= 0) & (p <= 1) & (2 * r > f)
            if ok.sum() > 1:
                draw.line([tuple(q) for q in px(r[ok], p[ok]).tolist()], fill=_ISO_F, width=1)
                lx, ly = px(np.array([0.92]), np.array([f * 0.92 / (2 * 0.92 - f)]))[0].tolist()
                draw.text((lx, ly - base - 2), f"f={f:.1f}", fill=_ISO_F, font=font)

    # Axes box.
    draw.rectangle([left, top, right, bottom], outline=_AXIS, width=1)

    # Curves (consecutive points falling on the same pixel are merged, so long curves stay cheap).
    for k, (r, p) in enumerate(data.values()):
        if r.size == 0:
            continue
        pts = px(r, p)
        change = np.ones(pts.shape[0], dtype=bool)
        change[1:] = np.any(pts[1:] != pts[:-1], axis=1)
        pts = pts[change]
        colour = PALETTE[k % len(PALETTE)]
        if pts.shape[0] == 1:
            x, y = pts[0].tolist()
            draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill=colour)
        else:
            draw.line([tuple(q) for q in pts.tolist()], fill=colour, width=3, joint="curve")

    # Title and axis labels.
    tw, th = _text_size(draw, title, title_font)
    draw.text(((left + right) / 2 - tw / 2, max(2, (top - th) / 2 - 2)), title, fill=_AXIS, font=title_font)
    tw, th = _text_size(draw, "Recall", font)
    draw.text(((left + right) / 2 - tw / 2, bottom + 12 + th + 4), "Recall", fill=_AXIS, font=font)
    tw, th = _text_size(draw, "Precision", font)
    label_img = Image.new("RGB", (tw + 4, th + 8), _BACKGROUND)
    ImageDraw.Draw(label_img).text((2, 0), "Precision", fill=_AXIS, font=font)
    label_img = label_img.rotate(90, expand=True)
    img.paste(
        label_img,
        (
            max(0, left - 9 - _text_size(draw, "0.0", font)[0] - label_img.width - 6),
            (top + bottom) // 2 - label_img.height // 2,
        ),
    )

    # Legend (lower left, as L-CNN's plots).
    if data:
        rows = [(PALETTE[k % len(PALETTE)], label) for k, label in enumerate(data)]
        line_h = base + 8
        box_w = 40 + max(_text_size(draw, label, font)[0] for _, label in rows) + 12
        box_h = len(rows) * line_h + 10
        bx, by = left + 12, bottom - 12 - box_h
        draw.rectangle([bx, by, bx + box_w, by + box_h], fill=_BACKGROUND, outline=(160, 160, 160))
        for i, (colour, label) in enumerate(rows):
            y = by + 5 + i * line_h + line_h // 2
            draw.line([(bx + 8, y), (bx + 32, y)], fill=colour, width=3)
            _, th = _text_size(draw, label, font)
            draw.text((bx + 40, y - th / 2 - 2), label, fill=_AXIS, font=font)

    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")
