"""Pydantic v2 schema of the RoofMapNet configuration.

Every model is strict (``extra="forbid"``: a misspelt key is an error), immutable (``frozen=True``) and
range-checked.  The defaults are those of the user's document (``TRAINING_MODULE.md``) and of the official
``config/config.yaml``; ``config/config.yaml`` in this repository loads to exactly these defaults.

The validated :class:`RootConfig` is passed explicitly to every component; there is no global config.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, ClassVar, Final, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from roofmapnet.errors import ConfigError


class StrictModel(BaseModel):
    """Base of all config sections: unknown keys are rejected and instances are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class IOConfig(StrictModel):
    """Where runs are written and where data is read from."""

    logdir: Path = Field(Path("logs"), description="Run directory: TensorBoard events, checkpoints/, config.yaml.")
    datadir: Path = Field(
        Path("/data/roofmapset"),
        description="Default preprocessed data root (train/, valid/, test/); `--data-root` overrides it.",
    )
    num_workers: int = Field(8, ge=0, le=256, description="DataLoader worker processes (0 = load in the main process).")
    validation_interval: int = Field(
        1000,
        ge=1,
        description=(
            "Validate every this many training steps, counted over the run (at the end of each epoch instead if it"
            " exceeds an epoch), and after the last step."
        ),
    )


class ImageConfig(StrictModel):
    """Input normalisation, in the 0-255 scale and RGB channel order."""

    mean: tuple[float, float, float] = Field((109.730, 103.832, 98.681), description="Per-channel RGB mean (0-255).")
    stddev: tuple[float, float, float] = Field((22.275, 22.124, 23.229), description="Per-channel RGB stddev (0-255).")

    @model_validator(mode="after")
    def _positive_std(self) -> ImageConfig:
        if any(s <= 0 for s in self.stddev):
            msg = "every stddev must be greater than 0"
            raise ValueError(msg)
        return self


class ModelConfig(StrictModel):
    """Architecture, sampler and decoding settings.  Keys follow the official ``config.yaml``."""

    image: ImageConfig = Field(default_factory=ImageConfig, description="Input normalisation (travels with the model).")
    batch_size: int = Field(8, gt=0, le=4096, description="Training batch size (per device).")
    batch_size_eval: int = Field(1, gt=0, le=4096, description="Validation / inference batch size.")
    image_size: int = Field(512, ge=64, le=8192, description="Network input side in pixels (multiple of 4·2^depth).")
    heatmap_size: int = Field(
        128, ge=16, le=2048, description="Heatmap side; the stem downsamples by image_size/heatmap_size = 4."
    )

    # Backbone (stacked hourglass).
    depth: int = Field(4, ge=1, le=6, description="Hourglass recursion depth.")
    num_stacks: int = Field(2, ge=1, le=8, description="Number of hourglass stacks.")
    num_blocks: int = Field(1, ge=1, le=4, description="Residual blocks per hourglass level.")
    inplanes: int = Field(64, ge=4, le=512, description="Stem width (conv1 output channels).")
    num_feats: int = Field(
        128, ge=4, le=1024, description="Bottleneck planes; the backbone feature has 2·num_feats channels."
    )
    head_size: tuple[tuple[int, ...], ...] = Field(
        ((2,), (1,), (2,)),
        description="Output channels per head: junction (2-class), line map (1), offsets (2). Only the default is supported.",
    )
    jmap_channels: int = Field(128, ge=4, le=1024, description="Width of the QCCM refinement convs (conv_jmap).")
    channels_last: bool = Field(
        True,
        description="Run the backbone, heads and junction refinement in channels-last memory format (faster with "
        "oneDNN on CPUs and with cuDNN on GPUs; weights and checkpoints are unchanged). false: NCHW.",
    )

    # Line verifier.
    n_pts0: int = Field(64, ge=4, le=512, description="LoI sample points per line.")
    n_pts1: int = Field(8, ge=1, le=128, description="Points per line after max-pooling (n_pts0 must be a multiple).")
    dim_loi: int = Field(128, ge=4, le=1024, description="Channels of the LoI feature (fc1 output).")
    dim_fc: int = Field(1024, ge=4, le=8192, description="Hidden width of the line classifier MLP (fc2).")
    aoam_channels: int = Field(64, ge=4, le=512, description="Channels of the occlusion-aware module's conv1d stack.")

    # Sampling (training) and proposals.
    sampler: Literal["lcnn", "all_pairs"] = Field(
        "lcnn",
        description="Training line sampler: L-CNN's bounded mix (default) or all proposal pairs as the released code.",
    )
    all_pairs_cap: int = Field(20000, ge=1, description="Upper bound of lines per image for sampler=all_pairs.")
    n_stc_posl: int = Field(300, ge=0, description="Static positive (GT) lines per image.")
    n_stc_negl: int = Field(40, ge=0, description="Static hard-negative lines per image.")
    n_dyn_junc: int = Field(300, ge=2, le=2000, description="Maximum junction proposals per image.")
    n_dyn_posl: int = Field(300, ge=0, description="Dynamic positive lines per image.")
    n_dyn_negl: int = Field(80, ge=0, description="Dynamic hard-negative lines per image.")
    n_dyn_othr: int = Field(600, ge=0, description="Dynamic random lines per image.")
    use_cood: bool = Field(False, description="Append endpoint coordinates to the line feature (official: off).")
    use_slop: bool = Field(False, description="Append the line direction to the line feature (official: off).")

    # Decoding.
    eval_junc_thres: float = Field(0.008, ge=0.0, le=1.0, description="Junction proposal threshold at inference.")
    line_score_thres: float = Field(0.1, ge=0.0, le=1.0, description="Minimum verifier score of an output line.")
    verifier_chunk: int = Field(
        8192, ge=1, description="Lines verified per chunk at inference (bounds peak memory, not results)."
    )

    @model_validator(mode="after")
    def _consistent(self) -> ModelConfig:
        if self.head_size != ((2,), (1,), (2,)):
            msg = "only head_size [[2], [1], [2]] (junction, line map, offsets) is supported"
            raise ValueError(msg)
        if self.image_size % self.heatmap_size or self.image_size // self.heatmap_size != 4:
            msg = f"image_size ({self.image_size}) must be 4 × heatmap_size ({self.heatmap_size})"
            raise ValueError(msg)
        if self.heatmap_size % (2**self.depth):
            msg = f"heatmap_size ({self.heatmap_size}) must be a multiple of 2^depth ({2**self.depth})"
            raise ValueError(msg)
        if self.n_pts0 % self.n_pts1:
            msg = f"n_pts0 ({self.n_pts0}) must be a multiple of n_pts1 ({self.n_pts1})"
            raise ValueError(msg)
        return self

    @property
    def feature_channels(self) -> int:
        """Channels of the backbone feature map."""
        return 2 * self.num_feats


class OptimConfig(StrictModel):
    """Optimiser and learning-rate schedule."""

    name: Literal["Adam", "AdamW"] = Field("Adam", description="Optimiser.")
    lr: float = Field(1e-3, gt=0.0, le=10.0, description="Learning rate.")
    weight_decay: float = Field(0.0, ge=0.0, description="Weight decay (L2).")
    amsgrad: bool = Field(True, description="Use the AMSGrad variant.")
    max_epoch: int = Field(30, ge=1, description="Maximum training epochs.")
    lr_decay_epoch: int = Field(
        10, ge=1, description="Multiply the LR by lr_decay_gamma every this many epochs (StepLR)."
    )
    lr_decay_gamma: float = Field(0.1, gt=0.0, le=1.0, description="LR decay factor.")
    gradient_clip: float = Field(1.0, ge=0.0, description="Gradient-norm clipping (0 disables).")


class LossWeights(StrictModel):
    """Weights of the six loss terms (defaults from the user's document)."""

    gauss: float = Field(1.0, ge=0.0, description="L_gauss: dynamic Gaussian heatmap (focal).")
    qcc: float = Field(1.0, ge=0.0, description="L_qcc: quadratic coordinate calibration (BCE).")
    lhr: float = Field(1.0, ge=0.0, description="L_lhr: line heatmap regression (BCE).")
    off: float = Field(0.25, ge=0.0, description="L_off: junction offset regression (masked L2).")
    lv: float = Field(2.0, ge=0.0, description="L_lv: line verification (balanced BCE).")
    sf: float = Field(0.5, ge=0.0, description="L_sf: segmentation-factor regression of the occlusion module (L2).")


class LossConfig(StrictModel):
    """Loss weights and variants."""

    weights: LossWeights = Field(default_factory=LossWeights, description="Weights of the six terms.")
    gauss_loss: Literal["cornernet", "readme"] = Field(
        "cornernet", description="Focal-loss form of L_gauss (see docs/architecture.md)."
    )
    focal_alpha: float = Field(2.0, gt=0.0, description="Focusing exponent of L_gauss.")
    focal_gamma: float = Field(4.0, gt=0.0, description="Penalty-reduction exponent of L_gauss.")
    gauss_learnable: bool = Field(False, description="Let gradient reach gaussalpha/gaussbeta through the target.")
    sf_min_span: int = Field(4, ge=1, description="Shortest occluded run (LoI samples) used as an L_sf target.")
    sf_max_span: int = Field(48, ge=1, description="Longest occluded run (LoI samples) used as an L_sf target.")


class AugmentConfig(StrictModel):
    """Label-consistent augmentation of training samples."""

    hflip: bool = Field(True, description="Random horizontal flip (the seed's).")
    vflip: bool = Field(False, description="Random vertical flip.")
    rot90: bool = Field(False, description="Random rotation by a multiple of 90 degrees.")


class DataConfig(StrictModel):
    """Dataset behaviour."""

    augment: AugmentConfig = Field(default_factory=AugmentConfig, description="Training augmentation.")
    resize: Literal["stretch", "letterbox"] = Field(
        "stretch",
        description="Image → square network input: `stretch` each axis (L-CNN's), or `letterbox` (aspect kept, padded "
        "with model.image.mean). Used by preprocess and inference; stored in checkpoints.",
    )
    image_extensions: tuple[str, ...] = Field(
        (".png", ".jpg", ".jpeg", ".tif", ".tiff"), description="Image file suffixes recognised in data folders."
    )
    gsd_m: float | None = Field(
        None,
        gt=0.0,
        description="Ground sample distance of the network input, metres per pixel (null: unknown). When null, "
        "training copies it from the data root's dataset.json (written by `roofmap preprocess`, known for gis).",
    )


#: Per-image output kinds of ``roofmap infer``, in the order they are written.
OUTPUT_KINDS: Final = ("json", "geojson", "overlay", "facets")
#: What ``roofmap infer`` writes unless told (``facets`` needs shapely, the ``geo`` extra).
DEFAULT_OUTPUTS: Final = ("json", "geojson", "overlay")
OutputKind = Literal["json", "geojson", "overlay", "facets"]
#: Vector formats of georeferenced rasters (:data:`roofmapnet.inference.outputs.vectors.VECTOR_FORMATS`).
VectorFormatName = Literal["gpkg", "fgb", "shp", "geojson", "parquet"]
#: GeoJSON coordinates of georeferenced rasters.
GEOJSON_CRS_CHOICES: Final = ("wgs84", "native")
#: Smallest and largest accepted tile side (raster pixels).
MIN_TILE: Final = 16
MAX_TILE: Final = 16384
#: Default percentiles of the linear stretch of non-8-bit raster bands.
DEFAULT_STRETCH: Final = (2.0, 98.0)
#: L-CNN's post-processing factor t (τ = t·image diagonal) of its AP^H setting.
DEFAULT_POSTPROCESS_T: Final = 0.010


def _comma_separated(value: Any) -> Any:
    """``"a, b"`` → ``("a", "b")`` (anything else unchanged)."""
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


class OptionsModel(StrictModel):
    """A config section that is also built from options (the CLI's flags, a Python caller's keywords).

    :meth:`from_options` reports bad values as :class:`~roofmapnet.errors.ConfigError` (exit code 2), one line
    per problem naming the field by its dotted path in :class:`RootConfig` and the value given
    (``infer.raster.tile 8: Input should be greater than or equal to 16``), instead of pydantic's report.
    """

    #: Dotted path of the section in :class:`RootConfig`.
    section: ClassVar[str] = ""

    @classmethod
    def from_options(cls: type[_Options], **values: Any) -> _Options:
        """Validate ``values`` (field names as keywords).

        Raises:
            ConfigError: one line per problem.
        """
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            lines, fields = option_errors(exc, cls.section)
            raise ConfigError(lines, fields=fields) from None


_Options = TypeVar("_Options", bound=OptionsModel)


def option_errors(exc: ValidationError, section: str) -> tuple[list[str], tuple[str, ...]]:
    """One ``<section>.<field> <value>: <message>`` line per error of ``exc``, and the fields they name."""
    lines = []
    fields = []
    for err in exc.errors(include_url=False):
        dotted = ".".join([section, *(str(p) for p in err["loc"] if not isinstance(p, int))]).strip(".")
        fields.append(dotted)
        msg = str(err["msg"]).removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            lines.append(f"{dotted}: unknown option")
            continue
        given = err.get("input")
        value = "" if given is None or isinstance(given, dict) else " " + _show(given)
        lines.append(f"{dotted}{value}: {msg}")
    return lines, tuple(dict.fromkeys(fields))


def _show(value: Any) -> str:
    if isinstance(value, (tuple, list)):
        return ",".join(str(v) for v in value)
    return str(value)


def check_bands(bands: tuple[int, ...]) -> None:
    """Validate a band selection: one band (grey) or three (R, G, B), each 1 or more.

    Raises:
        ValueError: what is wrong (without naming the field).
    """
    if len(bands) not in (1, 3):
        msg = f"give one band (grey) or three (red,green,blue), got {len(bands)}"
        raise ValueError(msg)
    if min(bands) < 1:
        msg = "band numbers start at 1"
        raise ValueError(msg)


class RasterConfig(OptionsModel):
    """Tiled inference on rasters (GeoTIFFs and other GDAL formats; plain images with ``tile_all``)."""

    section: ClassVar[str] = "infer.raster"

    tile: int | None = Field(
        None,
        ge=MIN_TILE,
        le=MAX_TILE,
        description="Tile side in raster pixels (null: the model input size, scaled by gsd).",
    )
    overlap: int | None = Field(
        None,
        ge=0,
        description="Overlap of neighbouring tiles in raster pixels, less than half a tile (null: tile / 8).",
    )
    gsd: float | None = Field(
        None,
        gt=0.0,
        allow_inf_nan=False,
        description="Ground resolution (m/pixel) the model was trained at; scales the default tile of georeferenced rasters.",
    )
    bands: tuple[int, ...] | None = Field(
        None, description="1-based raster bands used as R,G,B, or one grey band (null: RGB bands, else 1,2,3, else 1)."
    )
    crs: Literal["wgs84", "native"] = Field(
        "wgs84", description="GeoJSON coordinates: wgs84 (RFC 7946 lon/lat) or native (the raster's CRS)."
    )
    vector_formats: tuple[VectorFormatName, ...] = Field(
        ("gpkg",),
        description="Vector files of georeferenced rasters (gpkg, fgb, shp, geojson, parquet), each with the lines, "
        "junctions and facets layers; empty: none.",
    )
    tile_all: bool = Field(False, description="Tile every input, plain images too (not only GeoTIFFs / GDAL rasters).")
    stretch: tuple[float, float] = Field(
        DEFAULT_STRETCH, description="Percentiles of the linear stretch of non-8-bit bands to 0-255."
    )

    @field_validator("vector_formats", mode="before")
    @classmethod
    def _split_vector_formats(cls, value: Any) -> Any:
        return _comma_separated(value.lower()) if isinstance(value, str) else value

    @field_validator("bands", mode="before")
    @classmethod
    def _parse_bands(cls, value: Any) -> Any:
        value = _comma_separated(value)
        return value or None

    @field_validator("bands")
    @classmethod
    def _check_bands(cls, value: tuple[int, ...] | None) -> tuple[int, ...] | None:
        if value is not None:
            check_bands(value)
        return value

    @field_validator("overlap")
    @classmethod
    def _overlap_below_half_tile(cls, value: int | None, info: ValidationInfo) -> int | None:
        tile = info.data.get("tile")
        if tile is not None and value is not None and 2 * value >= tile:
            msg = f"must be less than half the tile ({tile} px)"
            raise ValueError(msg)
        return value

    @field_validator("stretch")
    @classmethod
    def _check_stretch(cls, value: tuple[float, float]) -> tuple[float, float]:
        lo, hi = value
        if not (math.isfinite(lo) and math.isfinite(hi) and 0.0 <= lo < hi <= 100.0):
            msg = "expected two percentiles 0 <= low < high <= 100"
            raise ValueError(msg)
        return value


class InferConfig(OptionsModel):
    """Decoding, outputs and batching of ``roofmap infer`` (``null`` values come from the model section)."""

    section: ClassVar[str] = "infer"

    threshold: float | None = Field(
        None, ge=0.0, le=1.0, description="Keep lines with score above this (null: model.line_score_thres)."
    )
    junction_threshold: float | None = Field(
        None, ge=0.0, le=1.0, description="Junction proposal threshold (null: model.eval_junc_thres)."
    )
    max_lines: int | None = Field(
        None, ge=1, description="Keep the model's best this-many lines per image, before post-processing (null: all)."
    )
    postprocess: bool = Field(True, description="L-CNN duplicate/overlap removal in image pixels.")
    postprocess_t: float = Field(
        DEFAULT_POSTPROCESS_T, gt=0.0, lt=1.0, description="Post-processing factor t (tolerance t·image diagonal)."
    )
    outputs: tuple[OutputKind, ...] = Field(
        DEFAULT_OUTPUTS,
        min_length=1,
        description="Outputs to write per image: any of json, geojson, overlay, facets (roof-face polygons).",
    )
    geojson_junctions: bool = Field(True, description="Add the junctions to the GeoJSON as Point features.")
    batch_size: int | None = Field(
        None, ge=1, le=4096, description="Images (or tiles) per forward pass (null: model.batch_size_eval)."
    )
    workers: int = Field(2, ge=0, le=256, description="Background decoding threads (0: decode in the main thread).")
    recursive: bool = Field(False, description="Descend into sub-folders of folder inputs.")
    raster: RasterConfig = Field(default_factory=RasterConfig, description="Tiled inference on rasters.")

    @field_validator("outputs", mode="before")
    @classmethod
    def _parse_outputs(cls, value: Any) -> Any:
        value = _comma_separated(value)
        if isinstance(value, (tuple, list)):
            kinds = tuple(dict.fromkeys(str(v).strip().lower() for v in value))
            unknown = [k for k in kinds if k not in OUTPUT_KINDS]
            if unknown or not kinds:
                msg = f"expected a comma-separated subset of {','.join(OUTPUT_KINDS)}"
                raise ValueError(msg)
            return kinds
        return value


class RootConfig(StrictModel):
    """The whole configuration file."""

    io: IOConfig = Field(default_factory=IOConfig, description="Input/output locations.")
    model: ModelConfig = Field(default_factory=ModelConfig, description="Architecture, sampling and decoding.")
    optim: OptimConfig = Field(default_factory=OptimConfig, description="Optimiser and schedule.")
    loss: LossConfig = Field(default_factory=LossConfig, description="Loss weights and variants.")
    data: DataConfig = Field(default_factory=DataConfig, description="Dataset and augmentation.")
    infer: InferConfig = Field(default_factory=InferConfig, description="Inference: decoding, outputs, tiling.")
