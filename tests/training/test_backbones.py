"""Pretrained image backbones from local checkpoint files: torchvision's .pth or a safetensors state dict."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from arcsearch.prepare.defaults import PreparedData
from arcsearch.training.backbones import build_image_encoder


def test_safetensors_checkpoint_loads_the_same_weights_as_the_pth(prepared: PreparedData, tmp_path: Path) -> None:
    state = torch.load(prepared.mobilenet_weights, map_location="cpu", weights_only=True)
    converted = tmp_path / "mobilenet_v2.safetensors"
    save_file({name: tensor.contiguous() for name, tensor in state.items()}, converted)
    from_pth = build_image_encoder("mobilenet_v2", embedding_dim=64, checkpoint=prepared.mobilenet_weights)
    from_safetensors = build_image_encoder("mobilenet_v2", embedding_dim=64, checkpoint=converted)
    features_pth, features_st = from_pth.features.state_dict(), from_safetensors.features.state_dict()
    assert features_pth.keys() == features_st.keys()
    assert all(torch.equal(features_pth[name], features_st[name]) for name in features_pth)
    assert from_safetensors.projection.out_features == 64
    untrained = build_image_encoder("mobilenet_v2", embedding_dim=64)
    assert not torch.equal(untrained.features.state_dict()["0.0.weight"], features_st["0.0.weight"])


def test_a_checkpoint_of_another_architecture_is_refused(tmp_path: Path) -> None:
    wrong = tmp_path / "wrong.safetensors"
    save_file({"features.0.0.weight": torch.zeros(3, 3)}, wrong)
    with pytest.raises(RuntimeError, match="state_dict"):
        build_image_encoder("mobilenet_v2", embedding_dim=64, checkpoint=wrong)
