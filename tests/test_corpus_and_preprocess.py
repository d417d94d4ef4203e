"""Corpus readers and image decoding: good input read faithfully, bad input refused with a clear error."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from arcsearch.index import preprocess
from arcsearch.index.bundle import ImagePreprocessing
from arcsearch.index.corpus import CorpusError, read_image_folder, read_text_file
from arcsearch.index.preprocess import ImageDecodeError, decode_image, image_to_array


def test_jsonl_and_csv_give_the_same_items(tmp_path):
    (tmp_path / "t.jsonl").write_text('{"id": "a", "text": "red fox", "label": "animal", "src": "x"}\n\n'
                                      '{"text": "oak tree", "label": "plant"}\n')
    (tmp_path / "t.csv").write_text("id,text,label,src\na,red fox,animal,x\n2,oak tree,plant,\n")
    jsonl, csv = read_text_file(tmp_path / "t.jsonl"), read_text_file(tmp_path / "t.csv")
    assert [(i.item_id, i.text, i.label) for i in jsonl] == [("a", "red fox", "animal"), ("2", "oak tree", "plant")]
    assert [(i.item_id, i.text, i.label) for i in csv] == [(i.item_id, i.text, i.label) for i in jsonl]
    assert jsonl[0].metadata == {"src": "x"}


@pytest.mark.parametrize("content, message", [
    ('{"text": "", "label": "a"}\n', "non-empty"),
    ('{"text": "hello", "label": ["not", "text"]}\n', "label"),
    ("not json\n", "not JSON"),
    ('{"id": 1, "text": "a", "label": "x"}\n{"id": 1, "text": "b", "label": "y"}\n', "unique"),
])
def test_bad_text_rows_are_refused_with_the_reason(tmp_path, content, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(CorpusError, match=message):
        read_text_file(path)


def test_image_folder_needs_class_subfolders(tmp_path):
    with pytest.raises(CorpusError, match="no images"):
        read_image_folder(tmp_path)
    (tmp_path / "cat").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "cat" / "1.png")
    (tmp_path / "cat" / "notes.txt").write_text("skip me")
    items = read_image_folder(tmp_path)
    assert [(i.item_id, i.label) for i in items] == [("cat/1.png", "cat")]


def _png_bytes(size=(20, 10), color=(255, 0, 0)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


def test_image_to_array_normalises_to_chw():
    params = ImagePreprocessing(height=16, width=12)
    array = image_to_array(decode_image(_png_bytes()), params)
    assert array.shape == (3, 16, 12) and array.dtype == np.float32
    expected_red = (1.0 - params.mean[0]) / params.std[0]
    assert np.allclose(array[0], expected_red, atol=1e-5)
    assert np.allclose(array[1], (0.0 - params.mean[1]) / params.std[1], atol=1e-5)


def test_grey_images_become_rgb(prepared):
    path = sorted(prepared.faces_dir.glob("s1/*.pgm"))[0]
    img = decode_image(path)
    assert img.mode == "RGB" and img.size == (92, 112)


@pytest.mark.parametrize("data", [b"", b"not an image at all", _png_bytes()[:40]])
def test_bad_bytes_raise_image_decode_error(data):
    with pytest.raises(ImageDecodeError):
        decode_image(data)


def test_decompression_bomb_is_refused():
    buffer = io.BytesIO()
    Image.new("1", (9000, 9000)).save(buffer, format="PNG")  # tiny file, 81 megapixels
    with pytest.raises(ImageDecodeError, match="too large|exceeds|bomb"):
        decode_image(buffer.getvalue())


class SpyDecoder:
    """A Pillow plugin registered for the test: records every time Pillow asks it whether it knows a file."""

    format = "ARCSPY"

    def __init__(self) -> None:
        self.asked = 0

    def accept(self, prefix: bytes) -> bool:
        self.asked += 1
        return False

    def __enter__(self) -> SpyDecoder:
        Image.init()
        Image.register_open(self.format, lambda *_: None, self.accept)  # type: ignore[arg-type,return-value]
        return self

    def __exit__(self, *_: object) -> None:
        Image.OPEN.pop(self.format, None)
        Image.ID.remove(self.format)


def test_only_the_allowed_decoders_are_asked():
    with SpyDecoder() as spy:
        with pytest.raises(preprocess.ImageDecodeError):
            decode_image(b"GIF89 is not quite what this is")
        assert spy.asked == 0  # Image.open(formats=...) never tries a decoder outside the allowed ones
    buffer = io.BytesIO()
    Image.new("L", (8, 8)).save(buffer, format="TGA")  # a format Pillow reads but we do not accept
    with pytest.raises(preprocess.ImageDecodeError):
        decode_image(buffer.getvalue())


def _noisy(size: tuple[int, int], seed: int = 0) -> Image.Image:
    """A smooth random picture (bilinear upscale of random 24 x 18 pixels), RGB."""
    rng = np.random.default_rng(seed)
    small = Image.fromarray(rng.integers(0, 255, (18, 24, 3), dtype=np.uint8))
    return small.resize(size, Image.Resampling.BILINEAR)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_large_images_are_decoded_reduced_but_embed_the_same(fmt):
    params = ImagePreprocessing(height=112, width=112)
    buffer = io.BytesIO()
    _noisy((3000, 2400)).save(buffer, format=fmt)
    full = decode_image(buffer.getvalue())
    reduced = decode_image(buffer.getvalue(), target_px=(params.width, params.height))
    assert full.size == (3000, 2400) and reduced.mode == "RGB"
    assert 224 <= reduced.width < 448 and 224 <= reduced.height < 448, reduced.size
    thumbnail = decode_image(buffer.getvalue(), target_px=(100, 100), keep_aspect=True)
    assert 200 <= thumbnail.height < 400 and abs(thumbnail.width / thumbnail.height - 1.25) < 0.02
    difference = np.abs(image_to_array(full, params) - image_to_array(reduced, params))
    assert difference.mean() < 0.02 and difference.max() < 0.3, (difference.mean(), difference.max())


def test_small_images_are_not_reduced(prepared):
    path = sorted(prepared.faces_dir.glob("s1/*.pgm"))[0]
    assert decode_image(path, target_px=(112, 112)).size == (92, 112)


def test_a_pixel_limit_is_refused_as_too_large():
    data = _png_bytes(size=(100, 60))
    assert decode_image(data, max_pixels=6000).size == (100, 60)
    with pytest.raises(preprocess.ImageTooLargeError, match="100x60"):
        decode_image(data, max_pixels=5999)
    assert preprocess.probe_image(data) == ("PNG", 100, 60)
