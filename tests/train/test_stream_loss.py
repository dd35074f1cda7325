"""`[train] stream_weight`: with late fusion each stream's own logits also get the BCE loss."""
import numpy as np
import pytest
import torch

from pipeline.config import ConfigError
from train.config import MODELS, TrainConfig
from train.data import EpochSamples
from train.loop import run_epoch
from train.losses import bce
from train.model import HeadArgs, VideoHead

DIMS = (6, 4, 3)


def _head(fusion: str) -> VideoHead:
    torch.manual_seed(0)
    return VideoHead(HeadArgs(dims=DIMS, fusion=fusion, pooling="mean", hidden_dim=8, dropout=0.0,
                              embed_dim=0, num_classes=5, logit_scale=10.0,
                              learn_logit_scale=False))


def _samples(n: int = 12) -> EpochSamples:
    rng = np.random.default_rng(0)
    labels = (rng.random((n, 5)) < 0.4).astype(np.float32)
    return EpochSamples(rng.normal(size=(n, 2, sum(DIMS))).astype(np.float32), labels,
                        np.zeros(n, np.int64), np.zeros(n, np.int64))


def _epoch_loss(model: VideoHead, weight: float, s: EpochSamples) -> dict[str, float]:
    cfg = TrainConfig(batch_size=len(s.features), stream_weight=weight)  # one batch: one loss
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr)
    sums, steps = run_epoch(model, opt, cfg, MODELS["bce"], s, None, 0, torch.device("cpu"))
    assert steps == 1
    return sums


def test_late_fusion_adds_each_streams_bce():
    s = _samples()
    model = _head("late")
    x, y = torch.from_numpy(s.features), torch.from_numpy(s.labels)
    with torch.no_grad():  # before the epoch's one step moves the weights
        _, per_stream = model.stream_outputs(x)
        fused = bce(torch.stack(per_stream).mean(dim=0), y).item()
        own = float(np.mean([bce(lg, y).item() for lg in per_stream]))
    sums = _epoch_loss(model, 0.5, s)
    assert len(per_stream) == 3
    assert sums["loss_bce"] == pytest.approx(fused, rel=1e-5)  # the fused term is reported alone
    assert sums["loss"] == pytest.approx(fused + 0.5 * own, rel=1e-5)
    assert _epoch_loss(_head("late"), 0.0, s)["loss"] == pytest.approx(fused, rel=1e-5)


def test_one_stream_has_nothing_to_add():
    s = _samples()
    sums = _epoch_loss(_head("concat"), 0.5, s)
    assert sums["loss"] == pytest.approx(sums["loss_bce"], rel=1e-6)


def test_stream_weight_cannot_be_negative():
    with pytest.raises(ConfigError, match="stream_weight"):
        TrainConfig(stream_weight=-0.1)


@pytest.mark.gpu
def test_cuda_epoch_equals_cpu():
    """The stream losses on CUDA: the same epoch loss and the same weights after its step."""
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    s = _samples(64)
    cfg = TrainConfig(batch_size=64, stream_weight=0.5)
    out = {}
    for dev in ("cpu", "cuda"):
        model = _head("late").to(dev)
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr)
        sums, _ = run_epoch(model, opt, cfg, MODELS["bce"], s, None, 0, torch.device(dev))
        out[dev] = (sums["loss"], [p.detach().cpu() for p in model.parameters()])
    assert out["cuda"][0] == pytest.approx(out["cpu"][0], rel=1e-4)
    for a, b in zip(out["cpu"][1], out["cuda"][1]):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
