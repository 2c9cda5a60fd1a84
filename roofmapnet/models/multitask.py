"""MultitaskLearner: hourglass backbone + heads + the QCCM junction refinement (``detection.backbone.*``).

Attribute names mirror the official checkpoint: ``gaussalpha``, ``gaussbeta``, ``backbone``, ``conv_jmap``,
``latlayer`` (and the parameter-free ``maxpool``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from roofmapnet.config.schema import ModelConfig
from roofmapnet.models.hourglass import HourglassNet
from roofmapnet.models.outputs import HeadOutputs

#: Initial values of the dynamic-Gaussian parameters (σ = 2 px at init).
GAUSS_ALPHA_INIT = -0.5
GAUSS_BETA_INIT = 2.0


class MultitaskLearner(nn.Module):
    """Backbone + heads + quadratic coordinate calibration (QCCM) of the junction logits.

    For the junction logits ``g`` of a stack: ``q = conv_jmap(g) + upsample(latlayer(maxpool(g)))`` (bilinear,
    ``align_corners=True``, back to the heatmap size). The refinement convs (and their BatchNorms) are shared
    by all stacks.

    Args:
        cfg: the model section of the configuration.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.gaussalpha = nn.Parameter(torch.tensor([GAUSS_ALPHA_INIT]))
        self.gaussbeta = nn.Parameter(torch.tensor([GAUSS_BETA_INIT]))
        self.backbone = HourglassNet(
            cfg.head_size,
            depth=cfg.depth,
            num_stacks=cfg.num_stacks,
            num_blocks=cfg.num_blocks,
            inplanes=cfg.inplanes,
            num_feats=cfg.num_feats,
        )
        jc = cfg.jmap_channels
        self.conv_jmap = nn.Sequential(
            nn.Conv2d(2, jc, kernel_size=3, padding=1),
            nn.BatchNorm2d(jc),
            nn.ReLU(inplace=True),
            nn.Conv2d(jc, jc, kernel_size=3, padding=1),
            nn.BatchNorm2d(jc),
            nn.ReLU(inplace=True),
            nn.Conv2d(jc, 2, kernel_size=1),
        )
        self.latlayer = nn.Conv2d(2, 2, kernel_size=3, padding=1)
        self.maxpool = nn.MaxPool2d(2, stride=2)

    def refine(self, jlogits: Tensor) -> Tensor:
        """QCCM: refined 2-class junction logits [B, 2, H, W] from the DGHR logits ``jlogits`` [B, 2, H, W]."""
        lateral = self.latlayer(self.maxpool(jlogits))
        lateral = F.interpolate(lateral, size=jlogits.shape[-2:], mode="bilinear", align_corners=True)
        return self.conv_jmap(jlogits) + lateral

    def forward(self, images: Tensor, all_stacks: bool | None = None) -> HeadOutputs:
        """Dense predictions of every stack.

        Args:
            images: [B, 3, S_h, S_w] normalised images; both sides multiples of ``4·2**depth``.
            all_stacks: refine every stack (training) or only stack 0 (the reference's "testing" mode). ``None``
                follows ``self.training``.

        Returns:
            :class:`HeadOutputs`; ``qcc`` has ``num_stacks`` entries when ``all_stacks`` else one.
        """
        if all_stacks is None:
            all_stacks = self.training
        outputs, feature = self.backbone(images)
        # The reference refines the stacks one by one, final stack first, through shared BatchNorms: keep separate
        # calls (batching the stacks would change the BatchNorm statistics in training).
        refined = [self.refine(out[:, 0:2]) for out in (outputs if all_stacks else outputs[:1])]
        score = torch.stack(outputs)
        return HeadOutputs(
            dghr=score[:, :, 0:2],
            qcc=torch.stack(refined),
            lmap=score[:, :, 2],
            joff=score[:, :, None, 3:5],
            feature=feature,
        )
