"""Malformed requests for the fuzz test: random bytes as images, truncated files, huge numbers, wrong types,
deep JSON, invalid UTF-8. Deterministic (seeded); none of them is valid, so none changes a collection."""

from __future__ import annotations

import base64
import io
import json
import random
import struct
import zlib
from pathlib import Path
from typing import Any

from PIL import Image

WRONG_VALUES: list[Any] = [None, True, -1, 0, 10**30, -(10**30), 1e308, "1e309", "NaN", "", " ", "\x00",
                           [], [1, 2], {}, {"a": 1}, "a" * 5000, 3.5, "k", ["x"] * 2000]


def png_bomb(width: int = 100_000, height: int = 100_000) -> bytes:
    """A tiny PNG whose header claims ``width`` x ``height`` pixels (Pillow's decompression-bomb guard)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    body = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + body


def deep_json(depth: int) -> bytes:
    return b'{"text": ' + b"[" * depth + b"]" * depth + b"}"


def as_png(image: bytes) -> bytes:
    png = io.BytesIO()
    Image.open(io.BytesIO(image)).save(png, format="PNG")
    return png.getvalue()


def image_cases(rng: random.Random, face: bytes) -> list[dict[str, Any]]:
    real = [face, as_png(face)]
    cases = []
    for _ in range(60):
        blob = rng.randbytes(rng.choice([1, 7, 64, 1000, 20_000]))
        cases.append({"files": {"file": (rng.choice(["a.jpg", "b.png", "c", "../../x.pgm"]), blob)}})
    for _ in range(40):
        data = rng.choice(real)
        cases.append({"files": {"file": ("t.png", data[:rng.randrange(1, len(data) - 1)])}})
    for magic in (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF89a", b"P5\n", b"BM", b"RIFF"):
        cases.append({"files": {"file": ("m", magic + rng.randbytes(100))}})
    cases.append({"files": {"file": ("bomb.png", png_bomb())}})
    cases.append({"files": {"file": ("wide.png", png_bomb(2**31 - 1, 1))}})
    for value in WRONG_VALUES:
        cases.append({"files": {"file": ("f.pgm", face)}, "data": {"k": str(value)}})
        cases.append({"files": {"file": ("f.pgm", face)}, "data": {"min_score": str(value)}})
        cases.append({"files": {"file": ("f.pgm", face)}, "data": {"collection": str(value)[:200]}})
    cases.append({"content": rng.randbytes(500), "headers": {"content-type": "multipart/form-data; boundary=x"}})
    cases.append({"content": b"--x\r\n\r\n", "headers": {"content-type": "multipart/form-data"}})
    return [{"method": "POST", "path": "/v1/collections/images/search", **case} for case in cases]


def multi_file_cases(rng: random.Random, face: bytes) -> list[dict[str, Any]]:
    """Several ``file`` parts with one bad among good ones, too many parts, or a text field named ``file``."""
    good = ("f.pgm", face)
    cases: list[dict[str, Any]] = [
        {"files": [("file", good), ("file", ("x.png", rng.randbytes(300)))]},
        {"files": [("file", ("x", rng.randbytes(50))), ("file", good), ("file", good)]},
        {"files": [("file", good), ("file", ("t.png", as_png(face)[:400]))]},
        {"files": [("file", good), ("file", ("empty.pgm", b""))]},
        {"files": [("file", good), ("file", ("bomb.png", png_bomb()))]},
        {"files": [("file", (f"{i}.jpg", rng.randbytes(8))) for i in range(40)]},
        {"files": [("file", good), ("file", (None, b"not a file part"))]},
        {"files": [("file", good)], "data": {"file": "a text field named file"}},
    ]
    return [{"method": "POST", "path": "/v1/collections/images/search", **case} for case in cases]


JSON_TYPE = {"content-type": "application/json"}


def json_cases(rng: random.Random) -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = []
    for field in ("text", "texts", "k", "collection", "min_score", "filter"):
        for value in WRONG_VALUES:
            cases.append({"path": "/v1/collections/texts/search", "json": {"text": "a dog", field: value}})
    for value in WRONG_VALUES:
        cases.append({"path": "/v1/collections/scratch/search", "json": {"vector": value}})
        cases.append({"path": "/v1/collections/scratch/search", "json": {"vector": [value] * 384}})
        cases.append({"path": "/v1/reindex", "json": {"collection": "scratch", "items": value}})
        cases.append({"path": "/v1/reindex", "json": {"collection": value, "source": "no-such"}})
        cases.append({"method": "PUT", "path": "/v1/collections/images/items/x", "json": {"image_base64": value}})
    cases.append({"method": "PUT", "path": "/v1/collections/images/items/x",
                  "json": {"image_base64": base64.b64encode(rng.randbytes(300)).decode()}})
    cases.append({"method": "PUT", "path": "/v1/collections/images/items/x",
                  "json": {"image_base64": base64.b64encode(png_bomb()).decode()}})
    for depth in (100, 1000, 5000, 50_000):
        cases.append({"path": "/v1/collections/texts/search", "content": deep_json(depth), "headers": JSON_TYPE})
        cases.append({"path": "/v1/reindex", "content": deep_json(depth)})
    for _ in range(20):
        cases.append({"path": rng.choice(["/v1/texts/search", "/v1/reindex", "/v1/collections/texts/search"]),
                      "content": rng.randbytes(rng.choice([1, 50, 2000]))})
    for content in (b'{"text": "\xff\xfe bad utf-8"}', json.dumps({"text": "\ud800"}).encode(),
                    b'{"text": "a", "k": 1' + b"0" * 5000 + b"}"):
        cases.append({"path": "/v1/collections/texts/search", "headers": JSON_TYPE, "content": content})
    for path in ("/v1/jobs/" + "a" * 100, "/v1/collections/" + "%00" * 3 + "/items/x", "/v1/collections/x/items/"):
        cases.append({"method": "GET", "path": path})
    return [{"method": "POST", **case, "headers": {"content-type": "application/json", **case.get("headers", {})}}
            if "content" in case else {"method": "POST", **case} for case in cases]


def all_cases(face_path: Path, seed: int = 4) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    face = face_path.read_bytes()
    return image_cases(rng, face) + json_cases(rng) + multi_file_cases(rng, face)
