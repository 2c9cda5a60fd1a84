"""Geometry of the resize between an image and the square network input: ``stretch`` or ``letterbox``.

* ``stretch`` (L-CNN's convention, the default): each axis is scaled to the side ``S`` on its own, so a 65×400
  crop is squeezed by 0.64 along x and stretched by 3.9 along y.
* ``letterbox``: one scale for both axes, the longer side becomes ``S``; the resized image (``content``) is
  centred and the rest is padding filled with the normalisation mean ``model.image.mean``, i.e. zero after
  normalisation (the preprocessed PNGs store it rounded to uint8, within 0.5/255 of the mean).

Either way the map is affine per axis, ``input = image · scale + offset``, with the content's size rounded to
whole pixels and placed at a whole-pixel offset, so that the pixels of the resized image and the mapped
coordinates agree exactly.  Coordinates are continuous with pixel edges at integers (the image's right edge ``W``
maps to the content's right edge).  :class:`ResizeGeometry` maps points both ways, to the input side ``S`` or to
any other side of the same square (the heatmap), vectorised over numpy arrays and torch tensors alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, TypeVar, get_args

import numpy as np

#: ``data.resize`` values.
ResizeMode = Literal["stretch", "letterbox"]
RESIZE_MODES: tuple[str, ...] = get_args(ResizeMode)

ArrayT = TypeVar("ArrayT")


def _like(values: tuple[float, float], ref: Any) -> Any:
    """``values`` as an array that broadcasts against ``ref`` (a torch tensor or a numpy array) in its dtype."""
    if hasattr(ref, "new_tensor"):  # torch, without importing it here
        return ref.new_tensor(values)
    return np.asarray(values, dtype=np.result_type(ref, np.float64))


@dataclass(frozen=True)
class ResizeGeometry:
    """Where an ``image_hw`` image lies inside the ``side``² network input.

    Attributes:
        image_hw: ``(H, W)`` of the image.
        side: the square input's side ``S``.
        content_hw: ``(h, w)`` of the resized image inside the square (``(S, S)`` when stretched).
        offset_yx: ``(top, left)`` padding in input pixels (``(0, 0)`` when stretched).
    """

    image_hw: tuple[int, int]
    side: int
    content_hw: tuple[int, int]
    offset_yx: tuple[int, int] = (0, 0)

    @classmethod
    def fit(cls, image_hw: tuple[int, int], side: int, mode: str = "stretch") -> ResizeGeometry:
        """The geometry of ``mode`` (``stretch`` or ``letterbox``) for an ``image_hw`` image and a ``side``² input.

        Raises:
            ValueError: an unknown mode or a non-positive size.
        """
        h, w = int(image_hw[0]), int(image_hw[1])
        if h < 1 or w < 1 or side < 1:
            raise ValueError(f"image size {h}×{w} and side {side} must be positive")
        if mode == "stretch" or h == w:
            return cls((h, w), side, (side, side), (0, 0))
        if mode != "letterbox":
            raise ValueError(f"resize mode {mode!r} is not one of {', '.join(RESIZE_MODES)}")
        ch = max(1, min(side, round(h * side / max(h, w))))
        cw = max(1, min(side, round(w * side / max(h, w))))
        return cls((h, w), side, (ch, cw), ((side - ch) // 2, (side - cw) // 2))

    @property
    def is_identity_frame(self) -> bool:
        """Whether the content fills the square (stretch, or a square image)."""
        return self.content_hw == (self.side, self.side)

    def scale_yx(self, side: int | None = None) -> tuple[float, float]:
        """Per-axis scale from image pixels to a square of ``side`` (default: the input side)."""
        target = self.side if side is None else side
        (ch, cw), (h, w) = self.content_hw, self.image_hw
        # One correctly rounded division of exact integer products: stretch gives exactly target / H.
        return (ch * target) / (self.side * h), (cw * target) / (self.side * w)

    def offset_in(self, side: int | None = None) -> tuple[float, float]:
        """``(top, left)`` padding in a square of ``side`` (default: the input side)."""
        target = self.side if side is None else side
        return (self.offset_yx[0] * target) / self.side, (self.offset_yx[1] * target) / self.side

    def content_box(self, side: int | None = None) -> tuple[float, float, float, float]:
        """``(top, left, height, width)`` of the content in a square of ``side`` (default: the input side)."""
        target = self.side if side is None else side
        top, left = self.offset_in(target)
        return top, left, self.content_hw[0] * target / self.side, self.content_hw[1] * target / self.side

    def forward(self, points: ArrayT, side: int | None = None, order: str = "yx") -> ArrayT:
        """Image pixels → a square of ``side`` (default: the input side), for ``[..., 2]`` points in ``order``."""
        scale, offset = self.scale_yx(side), self.offset_in(side)
        if order == "xy":
            scale, offset = scale[::-1], offset[::-1]
        return points * _like(scale, points) + _like(offset, points)  # type: ignore[operator,no-any-return]

    def inverse(self, points: ArrayT, side: int | None = None, order: str = "yx") -> ArrayT:
        """A square of ``side`` (default: the input side) → image pixels; the exact inverse of :meth:`forward`."""
        scale, offset = self.scale_yx(side), self.offset_in(side)
        if order == "xy":
            scale, offset = scale[::-1], offset[::-1]
        return (points - _like(offset, points)) / _like(scale, points)  # type: ignore[operator,no-any-return]

    def to_stretch_frame(self, points: ArrayT, side: int, order: str = "yx") -> ArrayT:
        """Points of a ``side``² square of this geometry → the same square had the image been stretched."""
        if self.is_identity_frame:
            return points
        return content_to_frame(points, self.content_box(side), side, order)

    def resize_image(self, rgb: np.ndarray, fill: tuple[float, float, float]) -> np.ndarray:
        """An RGB uint8 ``[H, W, 3]`` image resized (bilinear, Pillow) into the ``side``² input, padding ``fill``."""
        from PIL import Image

        ch, cw = self.content_hw
        if tuple(rgb.shape[:2]) == (ch, cw):
            content = rgb
        else:
            content = np.asarray(Image.fromarray(rgb).resize((cw, ch), Image.Resampling.BILINEAR))
        if self.is_identity_frame:
            return content
        out = np.empty((self.side, self.side, 3), dtype=np.uint8)
        out[:] = np.clip(np.rint(np.asarray(fill, dtype=np.float64)), 0, 255).astype(np.uint8)
        top, left = self.offset_yx
        out[top : top + ch, left : left + cw] = content
        return out


def content_to_frame(
    points: ArrayT, box: tuple[float, float, float, float] | Any, side: int, order: str = "yx"
) -> ArrayT:
    """Points of a ``side``² square whose content fills ``box = (top, left, height, width)`` → the square that the
    content would fill alone (the stretch frame): ``(p - (top, left)) · side / (height, width)``.

    Evaluation compares letterboxed predictions and ground truth in this frame (L-CNN's), so that the sAP
    thresholds mean the same for both resize modes; a full box returns the points unchanged up to rounding.
    """
    top, left, height, width = (float(v) for v in box)
    offset, scale = (top, left), (side / height, side / width)
    if order == "xy":
        offset, scale = offset[::-1], scale[::-1]
    return (points - _like(offset, points)) * _like(scale, points)  # type: ignore[operator,no-any-return]
