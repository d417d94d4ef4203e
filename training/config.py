"""Typed training configurations; the defaults fit the default data on 2 CPU cores in about 2-3 minutes.

``TrainConfig`` holds what both modalities share (optimiser, objective, split, budget); ``ImageTrainConfig``
and ``TextTrainConfig`` add their data and encoder and override the defaults that differ. A config is
checked once, when it is made (``ConfigError``); the training loop (``training.engine``) reads it as it is.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from arcsearch.index.embedder import resolve_device
from arcsearch.training.data.augment import AUGMENT_CHOICES
from arcsearch.training.data.samplers import SAMPLERS
from arcsearch.training.data.streaming import default_workers
from arcsearch.training.engine.optimiser import LR_SCHEDULES
from arcsearch.training.engine.precision import PRECISIONS
from arcsearch.training.objectives.params import OBJECTIVE_NAMES, ObjectiveParams
from arcsearch.training.remedies import check_remedies

DEFAULT_TEXT_MODEL = "data/pretrained/all-MiniLM-L6-v2"
HEAD_INITS = ("auto", "centres", "random")
PROJECTION_INITS = ("auto", "pca", "random")
LONG_TEXT_CHOICES = ("truncate", "chunk", "auto")
# field -> key in reports and manifests: saved reports (and ``--reuse`` of them) name the objective "loss"
REPORT_KEYS = {"objective": "loss", "objective_params": "loss_params"}
RESULT_NEUTRAL_FIELDS = ("out_dir", "workers")  # change no number of a run (``--reuse`` ignores them)


class ConfigError(ValueError):
    """A training configuration value is out of range."""


@dataclass(kw_only=True)
class TrainConfig:
    """Knobs shared by image and text training.

    Learning rates are peak AdamW rates (encoder ``lr``, class centres ``head_lr``); ``objective`` names one
    of ``training.objectives.params.OBJECTIVE_NAMES`` (the ``--loss`` flag) with ``objective_params`` (scale,
    margins, ...); ``sampler`` picks the batches (``training.data.samplers``: ``auto`` is P x K with
    ``samples_per_class`` for triplet objectives); ``margin_warmup_fraction`` of training grows the margin
    from 0; ``holdout_fraction`` of all classes is held out for evaluation, ``validation_fraction`` of the
    rest is used for early stopping (0: none), after ``patience`` epochs without gain (None: never);
    ``closed_set_fraction`` of each training class's items is held out of training for the closed-set
    evaluation (``training.data.closed_set``; 0: none);
    ``max_train_seconds`` bounds the training wall time. ``head_init`` ``centres`` starts the class
    centres at the mean training embeddings, ``random`` at random.
    ``precision`` ``fp32``, ``bf16`` (cpu or cuda) or ``fp16`` (cuda only). Every ``checkpoint_every`` steps
    (0: never) a checkpoint goes to ``checkpoint_dir``; ``resume`` continues from it (bit-for-bit on cpu,
    without a time budget; see ``training.engine.loop``).
    """

    epochs: int = 3
    batch_size: int = 64
    lr: float = 5e-5
    head_lr: float = 3e-2
    weight_decay: float = 1e-4
    head_weight_decay: float = 0.0
    lr_schedule: str = "cosine"
    warmup_fraction: float = 0.1
    grad_clip: float = 5.0
    objective: str = "arcface"
    objective_params: ObjectiveParams = field(default_factory=ObjectiveParams)
    sampler: str = "auto"
    samples_per_class: int = 4
    margin_warmup_fraction: float = 0.2
    head_init: str = "centres"
    holdout_fraction: float = 0.25
    validation_fraction: float = 0.15
    min_validation_classes: int = 3
    require_gain: bool = False
    remedies: str = "auto"
    remedy_below_classes: int = 20
    closed_set_fraction: float = 0.2
    patience: int | None = None
    seed: int = 0
    device: str = "auto"
    max_train_seconds: float | None = None
    show_progress: bool = True
    precision: str = "fp32"
    checkpoint_every: int = 0
    checkpoint_dir: Path | None = None
    resume: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.objective_params, dict):
            self.objective_params = ObjectiveParams(**self.objective_params)
        self.checkpoint_dir = Path(self.checkpoint_dir) if self.checkpoint_dir is not None else None
        if self.epochs < 1:
            raise ConfigError(f"epochs must be at least 1, got {self.epochs}")
        if self.batch_size < 2:
            raise ConfigError(f"batch_size must be at least 2, got {self.batch_size}")
        if self.lr <= 0 or self.head_lr <= 0:
            raise ConfigError(f"learning rates must be positive, got lr={self.lr}, head_lr={self.head_lr}")
        if self.objective not in OBJECTIVE_NAMES:
            raise ConfigError(f"objective must be one of {OBJECTIVE_NAMES}, got {self.objective!r}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ConfigError(f"lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}")
        if self.sampler not in SAMPLERS:
            raise ConfigError(f"sampler must be one of {SAMPLERS}, got {self.sampler!r}")
        if not 1 <= self.samples_per_class <= self.batch_size // 2:
            raise ConfigError(f"samples_per_class must lie in [1, batch_size / 2], got {self.samples_per_class}")
        if self.head_init not in HEAD_INITS:
            raise ConfigError(f"head_init must be one of {HEAD_INITS}, got {self.head_init!r}")
        if not 0.0 <= self.closed_set_fraction < 1.0:
            raise ConfigError(f"closed_set_fraction must lie in [0, 1), got {self.closed_set_fraction}")
        if self.max_train_seconds is not None and self.max_train_seconds <= 0:
            raise ConfigError(f"max_train_seconds must be positive, got {self.max_train_seconds}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.precision == "fp16" and resolve_device(self.device).type != "cuda":  # "auto" as the run resolves it
            raise ConfigError("precision fp16 needs a CUDA device (a GradScaler on cpu is not supported); "
                              "use bf16 or fp32 on cpu")
        if self.min_validation_classes < 2:
            raise ConfigError(f"min_validation_classes must be at least 2, got {self.min_validation_classes}")
        if self.remedy_below_classes < 0:
            raise ConfigError(f"remedy_below_classes must be 0 (never) or more, got {self.remedy_below_classes}")
        check_remedies(self.remedies)
        if self.checkpoint_every < 0:
            raise ConfigError(f"checkpoint_every must be 0 (never) or a number of steps, got {self.checkpoint_every}")
        if (self.checkpoint_every or self.resume) and self.checkpoint_dir is None:
            raise ConfigError("checkpoint_every and resume need a checkpoint_dir")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (paths as strings, the objective's knobs nested), as recorded in reports and manifests,
        whose keys for the objective (``REPORT_KEYS``) are those of the ``--loss`` flag."""
        return {REPORT_KEYS.get(key, key): str(value) if isinstance(value, Path) else value
                for key, value in asdict(self).items()}


@dataclass(kw_only=True)
class ImageTrainConfig(TrainConfig):
    """Fine-tune an image encoder on ``images_dir/<label>/<image>`` (or the labelled image manifest
    ``images_dir``, see ``index.corpus``); export to ``out_dir``.

    ``freeze_batchnorm`` None means: freeze BatchNorm statistics when starting from a checkpoint;
    ``head_init`` ``auto`` starts the class centres at the mean training embeddings when starting from a
    checkpoint, at random otherwise (near-identical centres of a random encoder stall);
    ``projection_init`` ``auto`` starts the linear projection at the PCA of the pretrained pooled features
    when starting from a checkpoint (``pca``), at random otherwise. ``workers`` processes decode and augment
    the images as training needs them (``training.data.streaming``); the number changes no result.
    ``augment`` is the policy of ``training.data.augment`` (``none``, ``light``, ``default``, ``strong``, or
    ``auto``: chosen on the validation data; True/False mean default/none); ``flip`` False never flips.
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
    head_init: str = "auto"
    projection_init: str = "auto"
    freeze_batchnorm: bool | None = None
    augment: str = "default"
    flip: bool = True
    workers: int | None = None  # None: ``training.data.streaming.default_workers()``, resolved when made

    def __post_init__(self) -> None:
        self.images_dir, self.out_dir = Path(self.images_dir), Path(self.out_dir)
        self.checkpoint = Path(self.checkpoint) if self.checkpoint is not None else None
        super().__post_init__()
        self.workers = default_workers() if self.workers is None else self.workers
        if self.workers < 0:
            raise ConfigError(f"workers must be 0 (decode in the training process) or more, got {self.workers}")
        self.augment = {True: "default", False: "none"}.get(self.augment, self.augment)  # type: ignore[call-overload]
        if self.augment not in AUGMENT_CHOICES:
            raise ConfigError(f"augment must be one of {AUGMENT_CHOICES}, got {self.augment!r}")
        if self.projection_init not in PROJECTION_INITS:
            raise ConfigError(f"projection_init must be one of {PROJECTION_INITS}, got {self.projection_init!r}")
        if self.image_size < 32:
            raise ConfigError(f"image_size must be at least 32 pixels, got {self.image_size}")

    @property
    def uses_centre_init(self) -> bool:
        """Whether the class centres start at the mean training embeddings (``auto``: with a checkpoint)."""
        return self.head_init == "centres" or (self.head_init == "auto" and self.checkpoint is not None)


@dataclass(kw_only=True)
class TextTrainConfig(TrainConfig):
    """Fine-tune a sentence-transformers ``model`` (name or local folder) on the labelled texts of
    ``texts_file`` (JSONL or CSV with text, label); export to ``out_dir``. ``max_seq_length`` (tokens; None: the
    model's) is the window of training and of the bundle; ``long_texts`` is what the bundle does with a longer
    text: ``truncate``, ``chunk`` or ``auto`` (the better on the validation classes by MAP@R;
    training.fitting.text_policy)."""

    texts_file: Path
    out_dir: Path
    model: str = DEFAULT_TEXT_MODEL
    max_seq_length: int | None = None
    long_texts: str = "truncate"

    def __post_init__(self) -> None:
        self.texts_file, self.out_dir = Path(self.texts_file), Path(self.out_dir)
        self.model = str(self.model)
        super().__post_init__()
        if self.long_texts not in LONG_TEXT_CHOICES:
            raise ConfigError(f"long_texts must be one of {LONG_TEXT_CHOICES}, got {self.long_texts!r}")
        if self.max_seq_length is not None and self.max_seq_length < 4:
            raise ConfigError(f"max_seq_length must be at least 4 tokens, got {self.max_seq_length}")

    @property
    def uses_centre_init(self) -> bool:
        """Whether the class centres start at the mean training embeddings (``auto`` and ``centres``: yes)."""
        return self.head_init in ("auto", "centres")
