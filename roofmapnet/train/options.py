"""The options of one training run that are not part of the model's config: hardware and run limits.

:class:`TrainOptions` is the typed, validated object that :func:`roofmapnet.train.run.fit` takes next to a
:class:`~roofmapnet.config.RootConfig`.  The config says *what* is trained (and is saved into the run directory);
the options say *where and how long* (GPUs, precision, step limits, which weights to start from).  Bad values are
one-line :class:`~roofmapnet.errors.ConfigError`\\ s naming the field (``precision 8: expected one of ...``); the
CLI writes the fields as its flags.  This module imports no Lightning, so options validate cheaply.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import Field, field_validator

from roofmapnet.config.schema import OptionsModel
from roofmapnet.errors import ConfigError
from roofmapnet.utils.device import PRECISION_ALIASES, TRAIN_PRECISIONS, Precision, precision_spellings

#: Lightning strategies a run may ask for (``ddp_find_unused_parameters_true`` for a LoI branch without proposals).
Strategy = Literal["auto", "ddp", "ddp_find_unused_parameters_true", "ddp_spawn", "fsdp", "deepspeed"]
STRATEGIES: tuple[str, ...] = get_args(Strategy)


class TrainOptions(OptionsModel):
    """Hardware and run options of :func:`~roofmapnet.train.run.fit` (every field has the CLI's default)."""

    gpus: int | None = Field(None, ge=0, description="GPUs to use, 0 = CPU; None = 1 if a GPU is present, else CPU.")
    devices: int | str | None = Field(None, description="Devices per node (overrides the count of gpus).")
    num_nodes: int = Field(1, ge=1, description="Number of nodes (multi-node DDP).")
    strategy: Strategy = Field("auto", description="Lightning strategy.")
    precision: Precision = Field(Precision.fp32, description="32, 16, bf16 (or Lightning's names).")
    seed: int = Field(0, description="Seeds Python, numpy and torch (workers too).")
    max_steps: int = Field(-1, ge=-1, description="Stop after this many optimiser steps (-1 = no limit).")
    max_minutes: float | None = Field(None, gt=0, description="Stop after this much wall-clock training time.")
    limit_val_batches: int | float | None = Field(None, ge=0, description="Validate on at most this many batches.")
    progress: bool | None = Field(None, description="Rich progress bar on/off (None: on when stdout is a terminal).")
    resume_from: Path | None = Field(None, description="A .ckpt to continue (epoch, step, optimiser restored).")
    init_from: Path | None = Field(None, description="Start a new run from these weights (fine-tuning).")
    partial: bool = Field(False, description="With init_from: load the keys that match, report the others.")

    @field_validator("precision", mode="before")
    @classmethod
    def _training_precision(cls, value: Any) -> Precision:
        found = value if isinstance(value, Precision) else PRECISION_ALIASES.get(str(value).strip().lower())
        if found not in TRAIN_PRECISIONS:
            msg = f"expected one of {', '.join(precision_spellings(TRAIN_PRECISIONS))}"
            raise ValueError(msg)
        return found  # type: ignore[return-value]

    @classmethod
    def from_options(cls, **values: Any) -> TrainOptions:  # type: ignore[override]
        """Validate ``values`` (field names as keywords) and the rules between fields (:meth:`check`).

        Raises:
            ConfigError: one line per problem, naming the fields.
        """
        options = super().from_options(**values)
        options.check()
        return options

    def check(self) -> None:
        """The rules between fields: ``init_from`` or ``resume_from``, not both; ``partial`` needs ``init_from``.

        Raises:
            ConfigError: naming the fields.
        """
        if self.init_from is not None and self.resume_from is not None:
            msg = "init_from starts a new run from weights, resume_from continues one: give only one of them"
            raise ConfigError([msg], fields=("init_from", "resume_from"))
        if self.partial and self.init_from is None:
            raise ConfigError(["partial only applies to init_from"], fields=("partial", "init_from"))
