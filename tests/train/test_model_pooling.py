"""The head's temporal poolings (train/model.py POOLINGS)."""
from __future__ import annotations

import pytest
import torch

from train.model import POOLINGS, HeadArgs, VideoHead


def _head(pooling: str) -> VideoHead:
    torch.manual_seed(0)
    return VideoHead(HeadArgs((16, 8), "concat", pooling, 32, 0.0, 8, 14, 14.3, True)).eval()


@pytest.mark.parametrize("pooling", list(POOLINGS))
def test_every_pooling_gives_unit_embeddings_and_logits(pooling):
    embs, logits = _head(pooling)(torch.randn(5, 8, 24))
    assert logits.shape == (5, 14) and embs[0].shape == (5, 8)
    torch.testing.assert_close(embs[0].norm(dim=1), torch.ones(5))


def test_mean_pooling_ignores_segment_order_but_temporal_models_do_not():
    x = torch.randn(4, 8, 24)
    rev = x.flip(1)  # the same frames, played backwards
    with torch.no_grad():
        torch.testing.assert_close(_head("mean")(x)[1], _head("mean")(rev)[1])
        for temporal in ("tconv", "transformer"):
            assert not torch.allclose(_head(temporal)(x)[1], _head(temporal)(rev)[1], atol=1e-4)


def test_unknown_pooling_lists_the_choices():
    with pytest.raises(ValueError, match="valid: mean, attention, tconv, transformer"):
        _head("lstm")
