"""The RoofMapNet network: dense heads, line sampling, line verification and decoding to wireframes.

The state_dict equals the official checkpoint's (every key under ``detection.``), so the released ``.pth`` loads
with ``strict=True``.  The module is self-describing: its :class:`ModelConfig` is stored as ``model.cfg`` and
no global configuration is read.  Every size is derived from the config or from the tensors (any image side that
is a multiple of ``4·2**depth`` works, square or not); nothing assumes a device or a 512² input.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from roofmapnet.config.schema import ModelConfig
from roofmapnet.models.outputs import HeadOutputs, LineSamples, Wireframe
from roofmapnet.models.proposals import eval_k, match_junctions, nms3x3, topk_proposals, train_k
from roofmapnet.models.sampler import eval_pairs, sample_training_lines
from roofmapnet.models.verifier import LineVectorizer


class RoofMapNet(nn.Module):
    """RoofMapNet: stacked hourglass + DGHR/QCCM junctions + line map + offsets, and the AOAM line verifier.

    Training step::

        out = model(images)                                   # HeadOutputs, every stack refined
        samples = model.sample_lines(out, batch)              # candidates + labels
        logits, occ = model.verify(out.feature, out.lmap_prob, samples)

    Inference: ``model.predict(images)`` → one :class:`Wireframe` per image.

    Args:
        cfg: the model section of the configuration.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.detection = LineVectorizer(cfg)
        self.set_memory_format(torch.channels_last if cfg.channels_last else torch.contiguous_format)

    def set_memory_format(self, memory_format: torch.memory_format) -> None:
        """Run the dense part (backbone, heads, refinement, the verifier's ``fc1``) in ``memory_format``.

        ``torch.channels_last`` (``cfg.channels_last``, the default) or ``torch.contiguous_format`` (NCHW). Only the
        strides of the 4-D weights change: state_dict keys, shapes and values stay those of the official checkpoint.
        """
        self.detection.backbone.set_memory_format(memory_format)
        self.detection.fc1.to(memory_format=memory_format)  # type: ignore[call-overload]

    @property
    def memory_format(self) -> torch.memory_format:
        """The dense part's memory format (see :meth:`set_memory_format`)."""
        return self.detection.backbone.memory_format

    @property
    def line_score_thres(self) -> float:
        """Default minimum verifier score of an output line."""
        return self.cfg.line_score_thres

    # ----------------------------------------------------------------------------------------- dense heads
    def forward(self, images: Tensor, all_stacks: bool | None = None) -> HeadOutputs:
        """Backbone, heads and junction refinement.

        Args:
            images: [B, 3, S_h, S_w] normalised images (sides multiples of ``4·2**depth``).
            all_stacks: refine every stack (default in training) or stack 0 only (default in eval, the reference's
                "testing" mode; the other stacks' ``dghr``/``lmap``/``joff`` are still returned since the
                backbone computes them anyway).

        Returns:
            Per-stack logits and the last stack's feature (:class:`HeadOutputs`).
        """
        return self.detection.backbone(images, all_stacks)

    # ----------------------------------------------------------------------------------------- training lines
    def sample_lines(
        self, out: HeadOutputs, batch: dict[str, Any], generator: torch.Generator | None = None
    ) -> LineSamples:
        """Training candidates with labels from stack-0 junction proposals (no gradient).

        K rule ``K_b = max(min(2·N_b + 2, n_dyn_junc), 2)``; proposals are matched to the GT junctions
        (``batch["junc"]``, ``batch["junc_mask"]``) and pairs labelled with ``batch["Lpos"]``; see
        :func:`roofmapnet.models.sampler.sample_training_lines` for the L-CNN mix / all-pairs sampling.

        Args:
            out: the forward outputs.
            batch: the collated batch (docs/internals.md).
            generator: optional RNG (default: torch's global RNG).
        """
        with torch.no_grad():
            jprob = out.jmap_prob.float()
            joff = out.joff_pred.float()
            heat = nms3x3(jprob)
            junc_mask = torch.as_tensor(batch["junc_mask"], device=heat.device).to(torch.bool)
            props = topk_proposals(heat, joff, train_k(junc_mask, self.cfg.n_dyn_junc))
            match = match_junctions(props, torch.as_tensor(batch["junc"], device=heat.device), junc_mask)
            return sample_training_lines(props, match, batch, self.cfg, _hw(heat), generator)

    # ----------------------------------------------------------------------------------------- verification
    def verify(self, feature: Tensor, lmap_prob: Tensor, samples: LineSamples) -> tuple[Tensor, Tensor]:
        """Line logits and AOAM occlusion factors.

        Args:
            feature: [B, C, H, W] backbone feature (``out.feature``).
            lmap_prob: [B, H, W] line-map probability (``out.lmap_prob``), the structure-aware attention.
            samples: candidate lines.

        Returns:
            ``(logits [L], occ [L, 2])`` float32; ``occ`` = (s_f, s_b) in (0, 1), for the L_sf loss.
        """
        return self.detection.verify(feature, lmap_prob, samples)

    # ----------------------------------------------------------------------------------------- inference
    @torch.no_grad()
    def decode(
        self,
        out: HeadOutputs,
        image_sizes: Sequence[tuple[int, int]] | None = None,
        *,
        input_size: tuple[int, int] | None = None,
        max_lines: int | None = None,
        junction_threshold: float | None = None,
        score_threshold: float | None = None,
    ) -> list[Wireframe]:
        """Wireframes from forward outputs computed in eval mode (see :meth:`predict` for the arguments).

        ``input_size`` is the network input (S_h, S_w), the default image size (4 × the heatmap by default).
        """
        cfg = self.cfg
        jthr = cfg.eval_junc_thres if junction_threshold is None else junction_threshold
        sthr = cfg.line_score_thres if score_threshold is None else score_threshold
        jprob = out.jmap_prob.float()
        heat = nms3x3(jprob)
        hw = _hw(heat)
        bsz = heat.shape[0]
        if input_size is None:
            stride = cfg.image_size // cfg.heatmap_size
            input_size = (hw[0] * stride, hw[1] * stride)
        sizes = [tuple(s) for s in image_sizes] if image_sizes is not None else [input_size] * bsz
        if len(sizes) != bsz:
            msg = f"image_sizes has {len(sizes)} entries for a batch of {bsz} images"
            raise ValueError(msg)
        props = topk_proposals(heat, out.joff_pred.float(), eval_k(heat, jthr, cfg.n_dyn_junc))
        samples = eval_pairs(props, cfg, hw)
        x, att = self.detection.attend(out.feature, out.lmap_prob)
        chunk = cfg.verifier_chunk
        logits = torch.cat(
            [
                self.detection.classify(x, att, _slice(samples, start, start + chunk))[0]
                for start in range(0, max(len(samples), 1), chunk)
            ]
        )
        scores = torch.sigmoid(logits.float())
        keep = scores > sthr
        lines, scores, b = samples.lines[keep], scores[keep], samples.batch_idx[keep]
        # Group by image, score-descending inside each image (two stable sorts, no loop over lines).
        order = torch.sort(scores, descending=True, stable=True).indices
        order = order[torch.sort(b[order], stable=True).indices]
        lines, scores = lines[order], scores[order]
        counts = torch.bincount(b, minlength=bsz).tolist()
        k = props.k.tolist()
        results = []
        for i, (li, si) in enumerate(zip(lines.split(counts), scores.split(counts), strict=True)):
            n = li.shape[0] if max_lines is None else min(li.shape[0], max_lines)
            results.append(
                Wireframe(
                    lines=li[:n],
                    scores=si[:n],
                    junctions=props.xy[i, : k[i]],
                    junction_scores=props.score[i, : k[i]],
                    heatmap_size=hw,
                    image_size=(int(sizes[i][0]), int(sizes[i][1])),
                )
            )
        return results

    @torch.no_grad()
    def predict(
        self,
        images: Tensor,
        image_sizes: Sequence[tuple[int, int]] | None = None,
        *,
        max_lines: int | None = None,
        junction_threshold: float | None = None,
        score_threshold: float | None = None,
    ) -> list[Wireframe]:
        """Parse the wireframes of a batch of images (eval mode, no gradient; the mode is restored after).

        Proposals: 3×3 NMS, ``K_b = clamp(#{p > junction_threshold}, 2, n_dyn_junc)``; candidates: all pairs
        u < v in rank order; verification in chunks of ``cfg.verifier_chunk`` lines over the whole batch.

        Args:
            images: [B, 3, S_h, S_w] normalised images (already resized to the network input).
            image_sizes: (H, W) of each original image, so that ``Wireframe.lines_image`` is in its pixel frame;
                default: the network input size.
            max_lines: keep at most this many lines per image (the best).
            junction_threshold: proposal threshold (default ``cfg.eval_junc_thres``).
            score_threshold: keep lines with score > this (default ``cfg.line_score_thres``).

        Returns:
            One :class:`Wireframe` per image, lines sorted by descending score.
        """
        was_training = self.training
        self.eval()
        try:
            out = self(images)
            return self.decode(
                out,
                image_sizes,
                input_size=(int(images.shape[-2]), int(images.shape[-1])),
                max_lines=max_lines,
                junction_threshold=junction_threshold,
                score_threshold=score_threshold,
            )
        finally:
            self.train(was_training)


def _hw(heat: Tensor) -> tuple[int, int]:
    return int(heat.shape[-2]), int(heat.shape[-1])


def _slice(samples: LineSamples, start: int, stop: int) -> LineSamples:
    return LineSamples(
        lines=samples.lines[start:stop],
        batch_idx=samples.batch_idx[start:stop],
        labels=samples.labels[start:stop],
        feat=samples.feat[start:stop],
    )
