"""Stacked hourglass backbone and multi-task head (L-CNN's ``hourglass_pose.py``, as used by RoofMapNet).

Attribute names mirror the official checkpoint (``detection.backbone.backbone.*``): do not rename them.
Every size is an explicit constructor argument; nothing here reads a config object or assumes 512² inputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class Bottleneck2D(nn.Module):
    """Pre-activation bottleneck with expansion 2: ``conv3(relu(bn3(conv2(relu(bn2(conv1(relu(bn1(x)))))))))``.

    The residual (``downsample(x)`` or ``x``) is added without a final activation.

    Args:
        inplanes: input channels.
        planes: bottleneck channels; the block outputs ``2·planes`` channels.
        stride: stride of the 3×3 convolution.
        downsample: projection of the residual when the shape changes.
    """

    expansion = 2

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(inplanes)
        self.conv1 = nn.Conv2d(inplanes, planes, kernel_size=1)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=stride, padding=1)
        self.bn3 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, kernel_size=1)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        """Apply the block to ``x`` [B, inplanes, H, W]."""
        out = self.conv1(self.relu(self.bn1(x)))
        out = self.conv2(self.relu(self.bn2(out)))
        out = self.conv3(self.relu(self.bn3(out)))
        residual = self.downsample(x) if self.downsample is not None else x
        return out + residual


def _residual_stack(inplanes: int, planes: int, blocks: int) -> tuple[nn.Sequential, int]:
    """``blocks`` bottlenecks (the first one projecting the residual if needed) and their output width."""
    out_planes = planes * Bottleneck2D.expansion
    downsample = None
    if inplanes != out_planes:
        downsample = nn.Sequential(nn.Conv2d(inplanes, out_planes, kernel_size=1))
    layers: list[nn.Module] = [Bottleneck2D(inplanes, planes, downsample=downsample)]
    layers += [Bottleneck2D(out_planes, planes) for _ in range(1, blocks)]
    return nn.Sequential(*layers), out_planes


class Hourglass(nn.Module):
    """One hourglass of recursion ``depth``; ``hg[depth-1]`` is the outermost level, ``hg[0]`` the innermost.

    Each level holds three residual stacks (skip, down, up); the innermost level has a fourth (bottom).
    The input side must be divisible by ``2**depth``.

    Args:
        num_blocks: bottlenecks per residual stack.
        planes: bottleneck width; the hourglass maps ``2·planes`` channels to ``2·planes`` channels.
        depth: number of down/up-sampling levels.
    """

    def __init__(self, num_blocks: int, planes: int, depth: int) -> None:
        super().__init__()
        self.depth = depth
        ch = planes * Bottleneck2D.expansion
        self.hg = nn.ModuleList(
            nn.ModuleList(_residual_stack(ch, planes, num_blocks)[0] for _ in range(4 if level == 0 else 3))
            for level in range(depth)
        )
        self.maxpool = nn.MaxPool2d(2, stride=2)

    def _level(self, n: int, x: Tensor) -> Tensor:
        branches = cast(nn.ModuleList, self.hg[n - 1])
        up = branches[0](x)
        low = branches[1](self.maxpool(x))
        low = self._level(n - 1, low) if n > 1 else branches[3](low)
        low = branches[2](low)
        return up + F.interpolate(low, scale_factor=2.0, mode="nearest")

    def forward(self, x: Tensor) -> Tensor:
        """[B, 2·planes, H, W] -> [B, 2·planes, H, W]."""
        return self._level(self.depth, x)


class MultitaskHead(nn.Module):
    """Parallel ``conv3×3 → ReLU → conv1×1`` branches whose outputs are concatenated on the channel axis.

    Args:
        input_channels: channels of the backbone feature.
        head_size: output channels per branch, e.g. ``((2,), (1,), (2,))`` for junction / line / offset.
    """

    def __init__(self, input_channels: int, head_size: Sequence[Sequence[int]]) -> None:
        super().__init__()
        mid = input_channels // 4
        self.heads = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(input_channels, mid, kernel_size=3, padding=1),
                nn.ReLU(inplace=True),
                nn.Conv2d(mid, out, kernel_size=1),
            )
            for out in (sum(group) for group in head_size)
        )
        self.out_channels = sum(sum(group) for group in head_size)

    def branches(self, x: Tensor) -> list[Tensor]:
        """The branch outputs of ``x`` [B, C, H, W], each [B, out_i, H, W] in ``x``'s memory format.

        Separate tensors (rather than slices of :meth:`forward`'s concatenation) so that the junction logits feed
        the refinement without a strided-view copy and their gradients need no slice scatter.
        """
        return [head(x) for head in self.heads]

    def forward(self, x: Tensor) -> Tensor:
        """[B, C, H, W] -> [B, out_channels, H, W]."""
        return torch.cat(self.branches(x), dim=1)


class HourglassNet(nn.Module):
    """Stem + ``num_stacks`` hourglasses with intermediate supervision (L-CNN's ``HourglassNet``).

    The stem downsamples by 4 (stride-2 conv, then a 2×2 max-pool after ``layer1``); the hourglasses need the
    heatmap side to be a multiple of ``2**depth``, i.e. an image side that is a multiple of ``4·2**depth``.

    Args:
        head_size: channels per head branch (see :class:`MultitaskHead`).
        depth: hourglass recursion depth.
        num_stacks: number of hourglasses.
        num_blocks: bottlenecks per residual stack inside the hourglasses and in ``res``.
        inplanes: stem width.
        num_feats: bottleneck width of the hourglasses; the feature has ``2·num_feats`` channels.
    """

    def __init__(
        self,
        head_size: Sequence[Sequence[int]],
        *,
        depth: int,
        num_stacks: int,
        num_blocks: int,
        inplanes: int,
        num_feats: int,
    ) -> None:
        super().__init__()
        self.num_stacks = num_stacks
        self.conv1 = nn.Conv2d(3, inplanes, kernel_size=7, stride=2, padding=3)
        self.bn1 = nn.BatchNorm2d(inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.layer1, width = _residual_stack(inplanes, inplanes, 1)
        self.layer2, width = _residual_stack(width, width, 1)
        self.layer3, width = _residual_stack(width, num_feats, 1)
        self.maxpool = nn.MaxPool2d(2, stride=2)
        ch = num_feats * Bottleneck2D.expansion
        num_classes = sum(sum(group) for group in head_size)
        self.hg = nn.ModuleList(Hourglass(num_blocks, num_feats, depth) for _ in range(num_stacks))
        self.res = nn.ModuleList(_residual_stack(ch, num_feats, num_blocks)[0] for _ in range(num_stacks))
        self.fc = nn.ModuleList(
            nn.Sequential(nn.Conv2d(ch, ch, kernel_size=1), nn.BatchNorm2d(ch), nn.ReLU(inplace=True))
            for _ in range(num_stacks)
        )
        self.score = nn.ModuleList(MultitaskHead(ch, head_size) for _ in range(num_stacks))
        self.fc_ = nn.ModuleList(nn.Conv2d(ch, ch, kernel_size=1) for _ in range(num_stacks - 1))
        self.score_ = nn.ModuleList(nn.Conv2d(num_classes, ch, kernel_size=1) for _ in range(num_stacks - 1))
        self.out_channels = ch

    def forward(self, x: Tensor) -> tuple[list[list[Tensor]], Tensor]:
        """Run the backbone on images ``x`` [B, 3, S_h, S_w].

        Every layer keeps the memory format of its input (channels_last in, channels_last out: convolutions,
        BatchNorm, ReLU, max-pooling, nearest upsampling and the additions all preserve it).

        Returns:
            Per stack, **last stack first** ("stack 0"), the head branches (:meth:`MultitaskHead.branches`: junction
            [B, 2, h, w], line [B, 1, h, w], offset [B, 2, h, w] with h, w = S_h/4, S_w/4), and the last stack's
            feature ``[B, 2·num_feats, h, w]`` (post-ReLU).
        """
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.maxpool(self.layer1(x))
        x = self.layer3(self.layer2(x))
        outputs: list[list[Tensor]] = []
        y = x
        for i in range(self.num_stacks):
            y = self.fc[i](self.res[i](self.hg[i](x)))
            branches = cast(MultitaskHead, self.score[i]).branches(y)
            outputs.append(branches)
            if i < self.num_stacks - 1:
                x = x + self.fc_[i](y) + self.score_[i](torch.cat(branches, dim=1))
        return outputs[::-1], y
