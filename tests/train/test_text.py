"""Text encoders and the on-disk prompt-embedding cache."""
import numpy as np
import pytest

from train.text import (HashTestEncoder, SentenceTransformerEncoder, build_text_encoder, cache_file,
                        embed_texts, encoder_id, prompt_embeddings)


class CountingEncoder(HashTestEncoder):
    """The test encoder, counting the texts it is asked to encode."""

    def __init__(self, weights="a"):
        super().__init__(dim=16)
        self.weights_sha256 = weights * 64
        self.calls: list[list[str]] = []

    def encode(self, texts):
        self.calls.append(list(texts))
        return super().encode(texts)


def test_second_encode_hits_the_cache(tmp_path):
    enc = CountingEncoder()
    texts = ["press deeper.", "kneel.", "press deeper."]
    a = embed_texts(enc, texts, tmp_path)
    assert enc.calls == [["press deeper.", "kneel."]]  # duplicates encoded once
    assert a.shape == (3, 16) and np.allclose(a[0], a[2])
    fresh = CountingEncoder()  # a new process: only the disk cache is shared
    b = embed_texts(fresh, ["kneel.", "press deeper."], tmp_path)
    assert fresh.calls == []
    assert np.array_equal(b, a[[1, 0]])
    embed_texts(fresh, ["kneel.", "press faster."], tmp_path)
    assert fresh.calls == [["press faster."]]  # only the new text


def test_cache_is_keyed_by_weights(tmp_path):
    a, b = CountingEncoder("a"), CountingEncoder("b")
    embed_texts(a, ["kneel."], tmp_path)
    embed_texts(b, ["kneel."], tmp_path)
    assert b.calls == [["kneel."]]
    assert cache_file(tmp_path, a) != cache_file(tmp_path, b)
    assert encoder_id(a).endswith("@" + "a" * 12)


def test_prompt_embeddings_concat_and_mean(tmp_path):
    enc = CountingEncoder()
    prompts = [("There are two errors.", "Kneel."), ("No errors.", "Keep going.")]
    cat = prompt_embeddings(prompts, "concat", enc, tmp_path)
    assert enc.calls[-1] == ["There are two errors. Kneel.", "No errors. Keep going."]
    mean = prompt_embeddings(prompts, "mean", enc, tmp_path)
    parts = enc.encode(["There are two errors.", "Kneel."])
    ref = parts.mean(axis=0)
    assert np.allclose(mean[0], ref / np.linalg.norm(ref), atol=1e-6)
    assert np.allclose(np.linalg.norm(cat, axis=1), 1) and np.allclose(np.linalg.norm(mean, axis=1), 1)
    with pytest.raises(ValueError, match="concat, mean"):
        prompt_embeddings(prompts, "sum", enc, tmp_path)


def test_unknown_encoder_lists_choices():
    with pytest.raises(ValueError, match="sentence_transformers, open_clip, test_hash"):
        build_text_encoder("bert")


def test_bundled_minilm_encodes_meaning(tmp_path):
    """The demo encoder (the only test that loads it: a few seconds)."""
    enc = SentenceTransformerEncoder()
    assert enc.name == "sentence_transformers:all-MiniLM-L6-v2" and len(enc.weights_sha256) == 64
    e = embed_texts(enc, ["Press the chest deeper.", "Push harder on the chest.",
                          "The weather is sunny today."], tmp_path)
    assert e.shape == (3, 384)
    assert e[0] @ e[1] > e[0] @ e[2] + 0.2  # related sentences are closer


@pytest.mark.slow
def test_open_clip_random_init_is_seeded_and_flagged():
    a = build_text_encoder("open_clip", "ViT-B-16", "", seed=0)
    assert a.random_init and "random-init" in a.name
    x = a.encode(["kneel."])
    assert x.shape == (1, 512)
    b = build_text_encoder("open_clip", "ViT-B-16", "", seed=0)
    assert np.allclose(b.encode(["kneel."]), x, atol=1e-5)
