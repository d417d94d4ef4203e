"""Image training streamed from disk: the same loss curve as decoding every image up front, with 0 or 2
loader workers, and no decoded image held while the encoder runs.

The in-memory reference below is the trainer as it was before streaming (every image decoded into a list,
batches cut from it in the main process). Without augmentation the streamed run must equal it bit for bit.
With augmentation the reference draws each image's generator from the run's generator, one seed per item
of a batch: what the old trainer did under torchrun and what streaming now does in every process, so that
a view no longer depends on which process makes it. (The old one-process trainer instead augmented a
batch's images from the run's generator in turn; no loader with workers can follow that order, since the
workers would have to share one generator.)
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from arcsearch.index.bundle import ImagePreprocessing
from arcsearch.index.preprocess import decode_image
from arcsearch.training.backbones import build_image_encoder
from arcsearch.training.config import ImageTrainConfig
from arcsearch.training.data.images import Augmentation, image_batch
from arcsearch.training.data.splits import shuffled_batches
from arcsearch.training.data.streaming import ImageFiles, PlannedBatches, default_workers, image_loader
from arcsearch.training.engine.loop import fit
from arcsearch.training.engine.results import Batch, FitResult
from arcsearch.training.fitting.image import fit_image_encoder
from arcsearch.training.objectives.registry import class_centres, make_objective
from arcsearch.training.run import train_images

CLASSES, PER_CLASS, SIDE = 6, 8, 32
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``<tmp>/c<k>/<i>.png``: 6 classes of 8 noisy 40x36 images around one colour pattern per class."""
    root = tmp_path_factory.mktemp("streamed") / "images"
    rng = np.random.default_rng(0)
    for k in range(CLASSES):
        pattern = rng.integers(0, 256, (40, 36, 3))
        (root / f"c{k}").mkdir(parents=True)
        for i in range(PER_CLASS):
            noisy = np.clip(pattern + rng.normal(0, 25, pattern.shape), 0, 255).astype(np.uint8)
            Image.fromarray(noisy).save(root / f"c{k}" / f"{i}.png")
    return root


def corpus_items(root: Path) -> tuple[list[Path], np.ndarray]:
    paths = sorted(root.glob("c*/*.png"))
    return paths, np.asarray([int(path.parent.name[1:]) for path in paths])


def config_for(root: Path, **overrides: Any) -> ImageTrainConfig:
    settings: dict[str, Any] = dict(backbone="small_cnn", image_size=SIDE, embedding_dim=16, epochs=2, batch_size=10,
                                    lr=3e-3, seed=3, device="cpu", show_progress=False, workers=0,
                                    remedies="none")
    return ImageTrainConfig(images_dir=root, out_dir=root.parent / "unused", **{**settings, **overrides})


def new_encoder() -> nn.Module:
    torch.manual_seed(0)
    return build_image_encoder("small_cnn", embedding_dim=16)


def in_memory_run(root: Path, config: ImageTrainConfig) -> tuple[nn.Module, FitResult]:
    """The trainer before streaming: all images decoded first, each batch cut from the list."""
    paths, codes = corpus_items(root)
    images = [decode_image(path) for path in paths]
    encoder, params = new_encoder(), ImagePreprocessing(height=SIDE, width=SIDE)
    objective = make_objective(config.objective, CLASSES, 16, config.objective_params, seed=config.seed)
    rng, labels, aug = np.random.default_rng(config.seed), torch.from_numpy(codes), Augmentation()

    def order(generator: np.random.Generator) -> list[np.ndarray]:
        return shuffled_batches(len(images), batch_size=config.batch_size, rng=generator)

    def batches(epoch: int) -> Iterator[Batch]:
        for index in order(rng):
            if config.augment == "none":
                yield image_batch([images[i] for i in index], params), labels[index]
                continue
            seeds = rng.integers(2**63, size=len(index))
            yield torch.cat([image_batch([images[i]], params, aug=aug, rng=np.random.default_rng(seed))
                             for i, seed in zip(index, seeds, strict=True)]), labels[index]

    result = fit(encoder, objective, batches=batches, embed=encoder, config=config,
                 steps_per_epoch=len(order(np.random.default_rng(0))), rng=rng)
    return encoder, result


def streamed_run(root: Path, config: ImageTrainConfig) -> tuple[nn.Module, FitResult]:
    paths, codes = corpus_items(root)
    encoder = new_encoder()
    _, result = fit_image_encoder(encoder, paths, codes, params=ImagePreprocessing(height=SIDE, width=SIDE),
                                  config=config, device=CPU)
    return encoder, result


def assert_same(a: tuple[nn.Module, FitResult], b: tuple[nn.Module, FitResult]) -> None:
    assert a[1].step_losses == b[1].step_losses
    assert len(a[1].step_losses) == 10  # 2 epochs of 4 batches of 10 and one of 8
    for (name, value), other in zip(a[0].state_dict().items(), b[0].state_dict().values(), strict=True):
        assert torch.equal(value, other), name


@pytest.mark.parametrize("augment", [False, True])
def test_streamed_training_follows_the_in_memory_loss_curve(corpus: Path, augment: bool) -> None:
    reference = in_memory_run(corpus, config_for(corpus, augment=augment))
    for workers in (0, 2):
        assert_same(streamed_run(corpus, config_for(corpus, augment=augment, workers=workers)), reference)


def test_the_order_and_the_views_come_from_the_seed(corpus: Path) -> None:
    first = streamed_run(corpus, config_for(corpus, workers=2))[1].step_losses
    assert streamed_run(corpus, config_for(corpus, seed=4, workers=2))[1].step_losses != first


def decoded_images() -> set[int]:
    """Ids of the decoded images alive in this process; Pillow keeps a 1 x 256 palette image of its own, which
    is not one."""
    return {id(obj) for obj in gc.get_objects() if issubclass(type(obj), Image.Image) and min(obj.size) > 1}


class DecodedImageProbe(nn.Module):
    """Counts, on every forward, the decoded images alive in this process that were not alive before the run
    (``BEFORE``: other tests of the session may hold some); the highest count in ``PEAK``."""

    PEAK = [0]
    BEFORE: set[int] = set()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        alive = len(decoded_images() - DecodedImageProbe.BEFORE)
        DecodedImageProbe.PEAK[0] = max(DecodedImageProbe.PEAK[0], alive)
        return x


def test_a_training_run_never_holds_the_decoded_corpus(corpus: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Baselines, PCA start, centre start, training, validation, held-out scoring, with the loader in this
    process: whenever the encoder (or a copy of its backbone) runs, no decoded image is left alive."""
    from arcsearch.training import run

    def probed_encoder(*args: Any, **kwargs: Any) -> nn.Module:
        encoder = build_image_encoder(*args, **kwargs)
        encoder.features = nn.Sequential(DecodedImageProbe(), encoder.features)
        return encoder

    monkeypatch.setattr(run, "build_image_encoder", probed_encoder)
    DecodedImageProbe.PEAK[0] = -1
    gc.collect()
    DecodedImageProbe.BEFORE = decoded_images()
    report = train_images(config_for(corpus, epochs=1, projection_init="pca", head_init="centres",
                                     holdout_fraction=0.34, validation_fraction=0.3,
                                     closed_set_fraction=0.3), export=False)  # 2 closed items a class
    assert {"raw_pixels", "untrained_backbone", "pretrained_pca_projection"} <= set(report["methods"])
    assert set(report["closed_set"]["methods"]) == {"raw_pixels", "untrained_backbone", "pretrained_pca_projection",
                                                    "arcface_finetuned"}  # the closed set, streamed the same way
    assert DecodedImageProbe.PEAK[0] == 0  # the old trainer held all 48 here


def test_the_loader_dataset_holds_paths_not_images(corpus: Path) -> None:
    paths, _ = corpus_items(corpus)
    files = ImageFiles(paths, ImagePreprocessing(height=SIDE, width=SIDE), aug=Augmentation())
    assert files.paths.dtype.kind == "S" and files.paths.nbytes < 100 * len(paths)
    assert not any(isinstance(value, Image.Image | list) for value in vars(files).values())
    pixels, index = files[(3, 7)]
    assert pixels.shape == (3, SIDE, SIDE) and index == 3
    assert torch.equal(files[(3, 7)][0], pixels) and not torch.equal(files[(3, 8)][0], pixels)
    assert torch.equal(files[3][0], image_batch([decode_image(paths[3])], files.params)[0])


def test_planned_batches_need_an_epoch_and_skip_nothing(corpus: Path) -> None:
    paths, _ = corpus_items(corpus)
    planner = PlannedBatches(augmented=False)
    loader = image_loader(ImageFiles(paths, ImagePreprocessing(height=SIDE, width=SIDE)), workers=0, device=CPU,
                          batch_sampler=planner)
    with pytest.raises(RuntimeError, match="start"):
        next(iter(loader))
    planner.start([np.array([5, 1, 7]), np.array([2, 0])], np.random.default_rng(0))
    assert [positions.tolist() for _, positions in loader] == [[5, 1, 7], [2, 0]]


def test_class_centres_do_not_depend_on_the_chunking() -> None:
    rng = np.random.default_rng(1)
    embeddings, codes = rng.normal(size=(50, 4)).astype(np.float32), rng.integers(0, 5, size=50)
    whole = class_centres([(embeddings, codes)], num_classes=5)
    chunked = class_centres(((embeddings[s:s + 7], codes[s:s + 7]) for s in range(0, 50, 7)), num_classes=5)
    assert torch.equal(whole, chunked)
    with pytest.raises(ValueError, match="at least one"):
        class_centres([], num_classes=5)


def test_workers_default_to_a_few_and_refuse_negatives(corpus: Path) -> None:
    assert 0 <= default_workers() <= 4
    assert config_for(corpus, workers=None).workers == default_workers()
    with pytest.raises(ValueError, match="workers"):
        config_for(corpus, workers=-1)
