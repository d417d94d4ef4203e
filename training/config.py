"""Typed training configurations; the defaults fit the default data on 2 CPU cores in about 2-3 minutes."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from training.loop import FitSettings

DEFAULT_TEXT_MODEL = "data/pretrained/all-MiniLM-L6-v2"
HEADS = ("arcface", "softmax")
HEAD_INITS = ("auto", "centres", "random")
PROJECTION_INITS = ("auto", "pca", "random")


class ConfigError(ValueError):
    """A training configuration value is out of range."""


def _check_common(config: ImageTrainConfig | TextTrainConfig) -> None:
    if config.epochs < 1:
        raise ConfigError(f"epochs must be at least 1, got {config.epochs}")
    if config.batch_size < 2:
        raise ConfigError(f"batch_size must be at least 2, got {config.batch_size}")
    if config.lr <= 0 or config.head_lr <= 0:
        raise ConfigError(f"learning rates must be positive, got lr={config.lr}, head_lr={config.head_lr}")
    if config.head not in HEADS:
        raise ConfigError(f"head must be one of {HEADS}, got {config.head!r}")
    if config.head_init not in HEAD_INITS:
        raise ConfigError(f"head_init must be one of {HEAD_INITS}, got {config.head_init!r}")
    if config.max_train_seconds is not None and config.max_train_seconds <= 0:
        raise ConfigError(f"max_train_seconds must be positive, got {config.max_train_seconds}")


def fit_settings(config: ImageTrainConfig | TextTrainConfig, *, has_validation: bool) -> FitSettings:
    """The training loop's settings; early stopping only when there are validation classes."""
    return FitSettings(epochs=config.epochs, lr=config.lr, head_lr=config.head_lr,
                       weight_decay=config.weight_decay, warmup_fraction=config.warmup_fraction,
                       grad_clip=config.grad_clip, margin_warmup_fraction=config.margin_warmup_fraction,
                       max_train_seconds=config.max_train_seconds,
                       patience=config.patience if has_validation else None, show_progress=config.show_progress)


def config_to_dict(config: ImageTrainConfig | TextTrainConfig) -> dict[str, Any]:
    """JSON-ready dict of a config (paths as strings), as recorded in reports and manifests."""
    return {key: str(value) if isinstance(value, Path) else value for key, value in asdict(config).items()}


@dataclass
class ImageTrainConfig:
    """Fine-tune an image encoder with a margin head on ``images_dir/<label>/<image>``; export to ``out_dir``.

    Learning rates are peak AdamW rates (encoder ``lr``, head ``head_lr``); ``margin_rad`` in radians;
    ``holdout_fraction`` of all classes is held out for evaluation, ``validation_fraction`` of the rest
    is used for early stopping (0: none); ``max_train_seconds`` bounds the training wall time.
    ``freeze_batchnorm`` None means: freeze BatchNorm statistics when starting from a checkpoint;
    ``head_init`` ``auto`` starts the ArcFace class centres at the mean training embeddings when starting
    from a checkpoint (``centres``), at random otherwise (near-identical centres of a random encoder stall);
    ``projection_init`` ``auto`` starts the linear projection at the PCA of the pretrained pooled features
    when starting from a checkpoint (``pca``), at random otherwise.
    """

    images_dir: Path
    out_dir: Path
    backbone: str = "mobilenet_v2"
    checkpoint: Path | None = None
    embedding_dim: int = 128
    image_size: int = 112
    epochs: int = 15
    batch_size: int = 32
    lr: float = 1e-4
    head_lr: float = 3e-2
    weight_decay: float = 1e-4
    warmup_fraction: float = 0.1
    grad_clip: float = 5.0
    scale: float = 30.0
    margin_rad: float = 0.5
    easy_margin: bool = False
    margin_warmup_fraction: float = 0.2
    head: str = "arcface"
    head_init: str = "auto"
    projection_init: str = "auto"
    holdout_fraction: float = 0.25
    validation_fraction: float = 0.0
    patience: int | None = None
    freeze_batchnorm: bool | None = None
    augment: bool = True
    seed: int = 0
    device: str = "auto"
    max_train_seconds: float | None = None
    show_progress: bool = True

    def __post_init__(self) -> None:
        self.images_dir, self.out_dir = Path(self.images_dir), Path(self.out_dir)
        self.checkpoint = Path(self.checkpoint) if self.checkpoint is not None else None
        _check_common(self)
        if self.projection_init not in PROJECTION_INITS:
            raise ConfigError(f"projection_init must be one of {PROJECTION_INITS}, got {self.projection_init!r}")
        if self.image_size < 32:
            raise ConfigError(f"image_size must be at least 32 pixels, got {self.image_size}")


@dataclass
class TextTrainConfig:
    """Fine-tune a sentence-transformers ``model`` (name or local folder) with a margin head on the
    labelled texts of ``texts_file`` (JSONL or CSV with text, label); export to ``out_dir``.
    The knobs mean what they mean in ``ImageTrainConfig``."""

    texts_file: Path
    out_dir: Path
    model: str = DEFAULT_TEXT_MODEL
    epochs: int = 3
    batch_size: int = 64
    lr: float = 5e-5
    head_lr: float = 3e-2
    weight_decay: float = 1e-4
    warmup_fraction: float = 0.1
    grad_clip: float = 5.0
    scale: float = 30.0
    margin_rad: float = 0.5
    easy_margin: bool = False
    margin_warmup_fraction: float = 0.2
    head: str = "arcface"
    head_init: str = "centres"
    max_seq_length: int | None = None
    holdout_fraction: float = 0.25
    validation_fraction: float = 0.0
    patience: int | None = None
    seed: int = 0
    device: str = "auto"
    max_train_seconds: float | None = None
    show_progress: bool = True

    def __post_init__(self) -> None:
        self.texts_file, self.out_dir = Path(self.texts_file), Path(self.out_dir)
        self.model = str(self.model)
        _check_common(self)
