"""LineVectorizer (``detection.*``): the backbone plus the line verifier (LoI pooling, AOAM, classifier).

Verification of candidate lines ``(e0, e1)`` (sample 0 at e1):

1. ``x = fc1(feature)·(1 + att)`` with ``att = lmap_prob`` (computed as ``x·att + x`` like the reference);
2. LoI samples of ``x`` → ``xp`` [L, dim_loi, n_pts0] and of ``att`` → ``xa`` [L, 1, n_pts0];
3. AOAM: ``occ = sigmoid(fc_line(flatten(relu(bn3(conv3(relu(bn2(conv2(relu(bn1(conv1(xa))))))))))))`` =
   ``(s_f, s_b)``; samples ``ceil(n·s_f) ≤ k < ceil(n·s_b)`` of ``xp`` are zeroed (nothing when f ≥ b);
4. ``MaxPool1d(n_pts0/n_pts1)``, channel-major flatten, concatenation of the [L, 8] line feature, ``fc2`` → logit.

The ``ceil`` cuts the graph, so the AOAM is trained only through its own loss on ``occ``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from roofmapnet.config.schema import ModelConfig
from roofmapnet.models.loi import loi_corners, sample_rows
from roofmapnet.models.multitask import MultitaskLearner
from roofmapnet.models.outputs import LineSamples
from roofmapnet.models.sampler import FEAT_DIM

#: Values per LoI block buffer (see :meth:`LineVectorizer.block_lines`): small enough for the allocator to reuse.
LOI_BLOCK_VALUES = 1 << 22


def occlusion_mask(occ: Tensor, n_pts: int) -> Tensor:
    """[L, n_pts] bool mask of the LoI samples ``ceil(n·s_f) ≤ k < ceil(n·s_b)`` for ``occ`` = (s_f, s_b) [L, 2]."""
    bounds = torch.ceil(occ.float() * n_pts).to(torch.long)
    k = torch.arange(n_pts, device=occ.device)[None, :]
    return (k >= bounds[:, 0:1]) & (k < bounds[:, 1:2])


class LineVectorizer(nn.Module):
    """The official ``detection`` module: ``backbone`` (:class:`MultitaskLearner`) + the line verifier.

    Attribute names mirror the checkpoint (``lambda_1``, ``fc1``, ``fc2``, ``conv1_line``, ``bn1``, ...; note that
    ``bn1/2/3`` here are the AOAM's BatchNorm1d layers).

    Args:
        cfg: the model section of the configuration.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.n_pts0 = cfg.n_pts0
        self.n_pts1 = cfg.n_pts1
        self.register_buffer("lambda_1", torch.linspace(0.0, 1.0, cfg.n_pts0)[:, None])
        self.backbone = MultitaskLearner(cfg)
        self.fc1 = nn.Conv2d(cfg.feature_channels, cfg.dim_loi, kernel_size=1)
        self.fc2 = nn.Sequential(
            nn.Linear(cfg.dim_loi * cfg.n_pts1 + FEAT_DIM, cfg.dim_fc),
            nn.ReLU(inplace=True),
            nn.Linear(cfg.dim_fc, cfg.dim_fc),
            nn.ReLU(inplace=True),
            nn.Linear(cfg.dim_fc, 1),
        )
        a = cfg.aoam_channels
        self.conv1_line = nn.Conv1d(1, a, kernel_size=3, padding=1)
        self.bn1 = nn.BatchNorm1d(a)
        self.conv2_line = nn.Conv1d(a, a, kernel_size=3, padding=1)
        self.bn2 = nn.BatchNorm1d(a)
        self.conv3_line = nn.Conv1d(a, a, kernel_size=3, padding=1)
        self.bn3 = nn.BatchNorm1d(a)
        self.fc_line = nn.Linear(a * cfg.n_pts0, 2)
        self.pooling = nn.MaxPool1d(cfg.n_pts0 // cfg.n_pts1, cfg.n_pts0 // cfg.n_pts1)
        self.relu = nn.ReLU(inplace=True)

    lambda_1: Tensor

    def attend(self, feature: Tensor, lmap_prob: Tensor) -> tuple[Tensor, Tensor]:
        """LoI source maps: ``x = fc1(feature)·att + fc1(feature)`` [B, dim_loi, H, W] and ``att`` [B, 1, H, W].

        ``x`` is returned in channels_last memory format (contiguous per-pixel channel rows for the LoI gathers).
        """
        att = lmap_prob[:, None]
        x = self.fc1(feature)
        return (x * att + x).contiguous(memory_format=torch.channels_last), att

    def aoam(self, xa: Tensor) -> Tensor:
        """Occlusion factors ``(s_f, s_b)`` [L, 2] (float32, in (0, 1)) from the line-map profiles ``xa`` [L, 1, n]."""
        h = self.relu(self.bn1(self.conv1_line(xa)))
        h = self.relu(self.bn2(self.conv2_line(h)))
        h = self.relu(self.bn3(self.conv3_line(h)))
        return torch.sigmoid(self.fc_line(h.flatten(1)).float())

    def classify(self, x: Tensor, att: Tensor, samples: LineSamples) -> tuple[Tensor, Tensor]:
        """Verify ``samples`` on the maps of :meth:`attend`.

        The LoI features are computed in blocks of lines (:meth:`block_lines`) so that the large per-line buffers
        stay small and are reused; in eval mode the AOAM is blocked too (its BatchNorms then use running
        statistics, so the result does not depend on the blocking). In training the AOAM sees all lines at once
        (BatchNorm1d statistics over the whole batch of lines, as the reference).

        Returns:
            ``(logits [L], occ [L, 2])``, both float32.
        """
        n_lines = len(samples)
        if n_lines == 0:
            return self._empty(x)
        lambdas = self.lambda_1.reshape(-1)
        lines, bidx = samples.lines, samples.batch_idx
        x = x.contiguous(memory_format=torch.channels_last)  # no-op for maps from attend()
        block = self.block_lines(x.shape[1])
        starts = range(0, n_lines, block)
        # The AOAM reads a detached line-map profile: it is trained by L_sf alone (ARCHITECTURE §4), whose gradient
        # must not reach the backbone through the attention map.
        n = self.n_pts0
        # Sample positions, corner rows and weights once for both maps (x and att have the same H, W).
        rows, weights = loi_corners(lines, bidx, lambdas, (x.shape[2], x.shape[3]), x.dtype)
        xa = sample_rows(att, rows, weights).detach().view(n_lines, 1, n)  # [L, n, 1] viewed as [L, 1, n]
        occ = self.aoam(xa) if self.training else torch.cat([self.aoam(xa[s : s + block]) for s in starts])
        mask = occlusion_mask(occ, n)
        pooled = torch.cat(
            [
                self._pooled(x, rows[s * n : (s + block) * n], weights[s * n : (s + block) * n], mask[s : s + block])
                for s in starts
            ]
        )
        feat = samples.feat.to(device=pooled.device, dtype=pooled.dtype)
        logits = self.fc2(torch.cat([pooled, feat], dim=1)).squeeze(1).float()
        return logits, occ

    def block_lines(self, channels: int) -> int:
        """Lines per LoI block: about 4 Mi values (16 MiB in fp32) per [lines, channels, n_pts0] buffer."""
        return max(1, LOI_BLOCK_VALUES // (channels * self.n_pts0))

    def _pooled(self, x: Tensor, rows: Tensor, weights: Tensor, mask: Tensor) -> Tensor:
        """LoI samples of ``x`` (corners :func:`loi_corners`) with the occluded samples zeroed, max-pooled and
        flattened channel-major.

        The occluded samples are zeroed through their corner weights (a [L·n, 4] mask instead of a pass over the
        [L, n, C] samples; ``0·v`` sums to 0 for finite features), and everything stays in the samples' native
        [L, n, C] layout: ``MaxPool1d(n0/n1)`` over the sample axis is ``amax`` over windows of a
        [L, n1, n0/n1, C] view (the same maxima; on exact ties the gradient is shared instead of given to the
        first), and only the pooled [L, n1, C] result is transposed to the channel-major order ``fc2`` expects.
        """
        lines = mask.shape[0]
        weights = weights.masked_fill(mask.reshape(-1, 1), 0)
        xp = sample_rows(x, rows, weights).view(lines, self.n_pts1, self.n_pts0 // self.n_pts1, -1)
        return xp.amax(dim=2).transpose(1, 2).reshape(lines, -1)

    def _empty(self, like: Tensor) -> tuple[Tensor, Tensor]:
        """Empty outputs that still belong to the graph of every verifier parameter (zero gradient, DDP-safe)."""
        logits = like.new_zeros((0,), dtype=torch.float32)
        occ = like.new_zeros((0, 2), dtype=torch.float32)
        if torch.is_grad_enabled():
            own = [p.sum() for name, p in self.named_parameters() if not name.startswith("backbone.")]
            anchor = (like.sum() + torch.stack(own).sum()) * 0.0
            logits = logits + anchor.float().expand(0)
            occ = occ + anchor.float().expand(0, 2)
        return logits, occ

    def verify(self, feature: Tensor, lmap_prob: Tensor, samples: LineSamples) -> tuple[Tensor, Tensor]:
        """``(logits [L], occ [L, 2])`` of ``samples`` given the backbone ``feature`` and ``lmap_prob`` [B, H, W]."""
        x, att = self.attend(feature, lmap_prob)
        return self.classify(x, att, samples)

    def forward(self, feature: Tensor, lmap_prob: Tensor, samples: LineSamples) -> tuple[Tensor, Tensor]:
        """Same as :meth:`verify`."""
        return self.verify(feature, lmap_prob, samples)
