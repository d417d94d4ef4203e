"""Data-parallel training through the real command line: torchrun with 2 gloo processes on 127.0.0.1."""

from __future__ import annotations

import json
import subprocess
import sys

from arcsearch.index.bundle import read_embedder_manifest
from arcsearch.training.run import report_path


def test_torchrun_trains_on_two_processes_and_rank_zero_alone_writes(faces_subset, tmp_path):
    """``torchrun -m arcsearch train`` with 2 gloo processes on 127.0.0.1: one report, one bundle, one
    checkpoint, and the report says both ranks trained the same number of global steps."""
    out = tmp_path / "emb"
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", "2",
               "--rdzv-backend", "c10d", "--rdzv-endpoint", "127.0.0.1:0", "-m", "arcsearch", "train",
               "--images", str(faces_subset), "--backbone", "small_cnn", "--out", str(out), "--epochs", "2",
               "--batch-size", "24", "--embedding-dim", "32", "--holdout-fraction", "0.34", "--device", "cpu",
               "--checkpoint-every", "3", "--checkpoint-dir", str(tmp_path / "ckpt"), "--validation-fraction", "0"]
    finished = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert finished.returncode == 0, finished.stderr[-3000:]
    report = json.loads(report_path(out).read_text())
    # 8 training people x 10 images, 2 of each kept for the closed set: 64 / 24 per global batch -> 3 steps an epoch
    assert report["fit"]["steps"] == 2 * 3 and report["closed_set"]["num_items"] == 16
    assert len(report["fit"]["heldout_map_at_r"]) == 2 and "arcface_finetuned" in report["methods"]
    assert "arcface_finetuned" in report["closed_set"]["methods"]
    assert read_embedder_manifest(out).modality == "image"
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["last.pt"]
    assert finished.stderr.count("report written to") == 1
