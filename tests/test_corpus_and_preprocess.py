"""Corpus readers and image decoding: good input read faithfully, bad input refused with a clear error."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from index.bundle import ImagePreprocessing
from index.corpus import CorpusError, read_image_folder, read_text_file
from index.preprocess import ImageDecodeError, decode_image, image_to_array


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
    ('{"text": "hello"}\n', "label"),
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
