"""The maths of rate and depth regression (issue 19): bins, the ordinal loss, few-shot
sampling, and the two heads. Arrays in, arrays out; no files (``train.regress`` does those).

The coarse-to-fine head follows NumCLIP / CardiacCLIP:

1. **coarse**: the video embedding is matched against the frozen text embeddings of one prompt
   per value bin ("compressions at about 95 per minute"); the softmax over the K bins is
   trained with an ordinal loss (soft ordinal labels, SORD: the target puts most weight on the
   true bin and less on bins further away, so confusing 90 with 100 costs less than with 60);
2. **fine**: a regression head predicts, for every bin, the offset of the value from the bin's
   centre (in bin widths, -0.5..0.5); the loss uses the true bin's offset only.

The prediction is the bin centre plus its offset, averaged over the bins with the bin
probabilities (``decode="soft"``) or taken from the most likely bin (``"hard"``).

Temporal aggregation (CardiacCLIP's Multi-Frame Learning): ``pooling="mfl"`` is a gated
attention over the T segments (Ilse et al.'s attention-MIL, which MFL builds on): each
segment gets a learned weight, so the informative ones count more than in a plain mean.

Shapes: B batch, T segments, D features, H hidden, E text embedding, K bins.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

MAX_LOGIT_SCALE = 100.0  # CLIP's clamp on a learnt temperature


# --- bins (pure numpy) ----------------------------------------------------------------------

def check_edges(edges: np.ndarray | tuple[float, ...]) -> np.ndarray:
    """``edges`` as float64, or ValueError: at least 3 (2 bins), strictly increasing, evenly
    spaced (the offset head counts in bin widths)."""
    e = np.asarray(edges, dtype=np.float64)
    if e.ndim != 1 or len(e) < 3 or not np.all(np.isfinite(e)):
        raise ValueError(f"bin edges {list(edges)}: need at least 3 finite numbers (2 bins)")
    d = np.diff(e)
    if np.any(d <= 0):
        raise ValueError(f"bin edges {list(edges)}: must increase")
    if np.ptp(d) > 1e-6 * d.mean():
        raise ValueError(f"bin edges {list(edges)}: must be evenly spaced")
    return e


def bin_centres(edges: np.ndarray) -> np.ndarray:
    """(K,) centres of the K = len(edges) - 1 bins."""
    e = np.asarray(edges, dtype=np.float64)
    return 0.5 * (e[:-1] + e[1:])


def bin_index(y: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """(N,) int64 bin of each value: bin k holds [edges[k], edges[k+1]); values below the first
    edge go to bin 0, values at or above the last to bin K-1 (the end bins are open)."""
    e = np.asarray(edges, dtype=np.float64)
    k = np.searchsorted(e, np.asarray(y, dtype=np.float64), side="right") - 1
    return np.clip(k, 0, len(e) - 2).astype(np.int64)


def bin_offset(y: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """(N,) offset of each value from its bin's centre in bin widths, clipped to [-0.5, 0.5]
    (a value beyond the end edges is as far as its end bin reaches)."""
    e = np.asarray(edges, dtype=np.float64)
    width = e[1] - e[0]
    k = bin_index(y, e)
    return np.clip((np.asarray(y, dtype=np.float64) - bin_centres(e)[k]) / width, -0.5, 0.5)


def soft_ordinal_targets(y: np.ndarray, edges: np.ndarray, sharpness: float = 2.0) -> np.ndarray:
    """(N, K) SORD targets: softmax over bins of ``-sharpness * ((y - centre_k) / width)^2``.

    Each row sums to 1, peaks at the bin nearest ``y`` and falls with the distance, so the
    loss knows the bins are ordered. ``sharpness`` -> infinity gives one-hot labels.
    """
    e = np.asarray(edges, dtype=np.float64)
    width = e[1] - e[0]
    d = (np.asarray(y, dtype=np.float64)[:, None] - bin_centres(e)[None, :]) / width
    z = -sharpness * d * d
    z -= z.max(axis=1, keepdims=True)
    p = np.exp(z)
    return p / p.sum(axis=1, keepdims=True)


def fewshot_indices(y: np.ndarray, edges: np.ndarray, shots: int, seed: int) -> np.ndarray:
    """Indices (sorted) of ``shots`` rows drawn per bin without replacement, with ``seed``.

    A bin with fewer rows gives all it has; ``shots <= 0`` keeps every row. The draw of a bin
    depends on (seed, bin) only, so adding rows to one bin changes no other bin's draw.
    """
    n = len(y)
    if shots <= 0:
        return np.arange(n)
    k = bin_index(y, edges)
    out = []
    for b in range(len(edges) - 1):
        members = np.flatnonzero(k == b)
        if len(members) == 0:
            continue
        rng = np.random.default_rng([int(seed), 7919, b])
        out.append(members[rng.permutation(len(members))[:shots]])
    return np.sort(np.concatenate(out)) if out else np.zeros(0, np.int64)


def centre_prompts(prompts: np.ndarray) -> np.ndarray:
    """(K, E) unit rows with their mean over the K rows removed, then re-normalised: what is
    left is what tells the bins apart."""
    p = np.asarray(prompts, np.float64)
    p = p - p.mean(axis=0, keepdims=True)
    norm = np.linalg.norm(p, axis=1, keepdims=True)
    if (norm < 1e-6).any():
        raise ValueError("the text encoder gives (nearly) the same embedding to every bin prompt: "
                         "it does not read the numbers in them; choose another text_encoder")
    return (p / norm).astype(np.float32)


# --- losses ---------------------------------------------------------------------------------

def ordinal_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean over rows of KL(targets || softmax(logits)); logits and targets (B, K)."""
    logp = F.log_softmax(logits, dim=1)
    t = targets.clamp_min(1e-12)
    return (targets * (t.log() - logp)).sum(dim=1).mean()


def offset_loss(offsets: torch.Tensor, k: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Smooth-L1 between the true bin's predicted offset and its target; offsets (B, K),
    k (B,) int64, target (B,), both in bin widths."""
    pred = offsets.gather(1, k[:, None])[:, 0]
    return F.smooth_l1_loss(pred, target, beta=0.1)


# --- the heads --------------------------------------------------------------------------------

@dataclass(frozen=True)
class RegressArgs:
    """Everything needed to rebuild a head; stored with the checkpoint."""

    dim: int  # D (all modalities and scales concatenated)
    method: str  # "c2f" (coarse-to-fine with prompts) | "plain" (MSE on the pooled features)
    pooling: str  # "mean" | "mfl"
    hidden_dim: int
    dropout: float
    embed_dim: int  # E of the prompt embeddings (c2f); 0 for plain
    num_bins: int  # K (c2f); 0 for plain
    context: str  # learnable prompt context: "none" | "shared" | "per_bin"
    logit_scale: float
    # temporal self-similarity (RepNet): the T x T cosine similarities of the segments of each
    # feature block (a modality or scale of ``blocks`` dims) join the pooled features; a
    # repetition rate shows as a pattern in them that a mean or an attention pool cannot see
    self_similarity: bool = False
    blocks: tuple[int, ...] = ()  # per-source D, summing to dim ((): one block)
    segments: int = 0  # T, for the size of the self-similarity input
    # the pooled features themselves (False: the self-similarity alone, which says how the
    # video changes over time but nothing of what the person looks like)
    use_pooled: bool = True

    def to_dict(self) -> dict:
        d = asdict(self)
        d["blocks"] = list(self.blocks)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "RegressArgs":
        return cls(**{**d, "blocks": tuple(d.get("blocks", ()))})


POOLINGS = {
    "mean": "average over the T segments (TSN's consensus)",
    "mfl": "gated attention over the segments (CardiacCLIP's Multi-Frame Learning)",
}
METHODS = {
    "c2f": "bins matched to prompt embeddings (ordinal loss) + offset regression in the bin",
    "plain": "one linear output on the pooled features, MSE on the standardised value",
}
CONTEXTS = {
    "none": "the frozen prompt embeddings as they are",
    "shared": "one learnt vector added to every bin's prompt embedding (CoOp's unified context)",
    "per_bin": "a learnt vector per bin added to its prompt embedding (CoOp's class-specific "
               "context)",
}


class MFLPool(nn.Module):
    """Gated attention over segments: w_t = softmax_t(v . (tanh(V x_t) * sigmoid(U x_t)))."""

    def __init__(self, dim: int, hidden: int = 128):
        super().__init__()
        self.v = nn.Linear(dim, hidden)
        self.u = nn.Linear(dim, hidden)
        self.w = nn.Linear(hidden, 1)

    def weights(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, D) -> (B, T) attention weights summing to 1 over T."""
        a = self.w(torch.tanh(self.v(x)) * torch.sigmoid(self.u(x)))  # (B, T, 1)
        return torch.softmax(a[..., 0], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.weights(x)[..., None] * x).sum(dim=1)


class RegressHead(nn.Module):
    """Features (B, T, D) -> a value per video, through bins and prompts (c2f) or directly."""

    def __init__(self, args: RegressArgs):
        super().__init__()
        for key, table in (("method", METHODS), ("pooling", POOLINGS), ("context", CONTEXTS)):
            if getattr(args, key) not in table:
                raise ValueError(f"unknown {key} {getattr(args, key)!r}; valid: {', '.join(table)}")
        if args.method == "c2f" and (args.num_bins < 2 or args.embed_dim < 1):
            raise ValueError("method c2f needs num_bins >= 2 and prompt embeddings (embed_dim)")
        self.args = args
        self.register_buffer("in_mean", torch.zeros(args.dim))
        self.register_buffer("in_std", torch.ones(args.dim))
        # the value's scale for the plain head (the c2f head counts in bins instead)
        self.register_buffer("y_mean", torch.zeros(()))
        self.register_buffer("y_std", torch.ones(()))
        # ... and the range it saw: a linear head extrapolates wildly on new people's features,
        # so its value is kept inside the training values (the c2f head is inside its bins)
        self.register_buffer("y_min", torch.tensor(-float("inf")))
        self.register_buffer("y_max", torch.tensor(float("inf")))
        self.pool = MFLPool(args.dim) if args.pooling == "mfl" else None
        self.blocks = list(args.blocks) or [args.dim]
        if sum(self.blocks) != args.dim:
            raise ValueError(f"blocks {self.blocks} do not sum to dim {args.dim}")
        n_ssm = 0
        if args.self_similarity:
            if args.segments < 2:
                raise ValueError("self_similarity needs segments >= 2")
            n_ssm = len(self.blocks) * args.segments * (args.segments - 1) // 2
        self.register_buffer("ssm_mean", torch.zeros(n_ssm))
        self.register_buffer("ssm_std", torch.ones(n_ssm))
        if not (args.use_pooled or n_ssm):
            raise ValueError("a head needs the pooled features or the self-similarity")
        n_in = (args.dim if args.use_pooled else 0) + n_ssm
        self.trunk = nn.Sequential(nn.Dropout(args.dropout), nn.Linear(n_in, args.hidden_dim),
                                   nn.GELU(), nn.Dropout(args.dropout))
        if args.method == "plain":
            self.out = nn.Linear(args.hidden_dim, 1)
            return
        k, e = args.num_bins, args.embed_dim
        self.proj = nn.Linear(args.hidden_dim, e)
        self.offset = nn.Linear(args.hidden_dim, k)
        self.register_buffer("prompts", torch.zeros(k, e))  # frozen, from the text encoder
        self.register_buffer("centres", torch.zeros(k))
        self.register_buffer("width", torch.ones(()))
        n_ctx = {"none": 0, "shared": 1, "per_bin": k}[args.context]
        self.context = nn.Parameter(torch.zeros(n_ctx, e)) if n_ctx else None
        self.log_scale = nn.Parameter(torch.tensor(math.log(args.logit_scale)))

    @torch.no_grad()
    def set_stats(self, features: np.ndarray, y: np.ndarray) -> None:
        """Input standardisation from the training rows (N, T, D) and the plain head's value
        scale from their targets (N,)."""
        flat = torch.from_numpy(np.asarray(features, np.float32)).reshape(-1, features.shape[-1])
        self.in_mean.copy_(flat.mean(dim=0))
        self.in_std.copy_(flat.std(dim=0, unbiased=False).clamp_min(1e-6))
        if self.args.self_similarity:
            x = (torch.from_numpy(np.asarray(features, np.float32)) - self.in_mean) / self.in_std
            s = self.self_similarity(x)
            self.ssm_mean.copy_(s.mean(dim=0))
            self.ssm_std.copy_(s.std(dim=0, unbiased=False).clamp_min(1e-3))
        yy = torch.as_tensor(np.asarray(y, np.float64), dtype=torch.float32)
        self.y_mean.copy_(yy.mean())
        self.y_std.copy_(yy.std(unbiased=False).clamp_min(1e-3) if len(yy) > 1 else torch.ones(()))
        self.y_min.copy_(yy.min())
        self.y_max.copy_(yy.max())

    @torch.no_grad()
    def set_bins(self, prompts: np.ndarray, edges: np.ndarray) -> None:
        """The frozen (K, E) bin prompt embeddings and the bins' edges (K + 1,).

        The prompts are centred over the bins before use (:func:`centre_prompts`): the K
        sentences differ only in their number, so their embeddings share a large common part
        (cosine ~0.9 between bins with MiniLM) that says nothing about which bin a video is in.
        """
        self.prompts.copy_(torch.from_numpy(centre_prompts(prompts)))
        self.centres.copy_(torch.from_numpy(bin_centres(edges).astype(np.float32)))
        self.width.fill_(float(edges[1] - edges[0]))

    def self_similarity(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, D) standardised -> (B, n_blocks * T(T-1)/2): per block, the cosine similarity
        of every pair of segments after removing the block's mean over T."""
        out = []
        t = x.shape[1]
        iu = torch.triu_indices(t, t, offset=1)
        for xb in torch.split(x, self.blocks, dim=-1):
            f = F.normalize(xb - xb.mean(dim=1, keepdim=True), dim=-1)
            out.append((f @ f.transpose(1, 2))[:, iu[0], iu[1]])
        return torch.cat(out, dim=1)

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, D) -> (B, H) after standardisation, pooling over T (plus the segments'
        self-similarity when asked) and the trunk."""
        x = (x - self.in_mean) / self.in_std
        parts = []
        if self.args.use_pooled:
            parts.append(self.pool(x) if self.pool is not None else x.mean(dim=1))
        if self.args.self_similarity:
            parts.append((self.self_similarity(x) - self.ssm_mean) / self.ssm_std)
        return self.trunk(torch.cat(parts, dim=1) if len(parts) > 1 else parts[0])

    def bin_prompts(self) -> torch.Tensor:
        """(K, E) unit prompt embeddings, with the learnt context added (CoOp-style)."""
        p = self.prompts
        if self.context is not None:
            p = p + self.context  # (1, E) or (K, E) broadcasts
        return F.normalize(p, dim=-1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """x (B, T, D) -> ``value`` (B,); for c2f also ``logits`` (B, K) and ``offsets`` (B, K)."""
        h = self.pooled(x)
        if self.args.method == "plain":
            z = self.out(h)[:, 0]
            return {"z": z, "value": torch.clamp(self.y_mean + self.y_std * z, self.y_min,
                                                  self.y_max)}
        emb = F.normalize(self.proj(h), dim=-1)  # (B, E)
        scale = self.log_scale.exp().clamp(max=MAX_LOGIT_SCALE)
        logits = scale * emb @ self.bin_prompts().t()  # (B, K)
        offsets = 0.5 * torch.tanh(self.offset(h))  # (B, K) in bin widths
        return {"logits": logits, "offsets": offsets,
                "value": decode(logits, offsets, self.centres, self.width, "soft")}

    @torch.no_grad()
    def predict(self, x: torch.Tensor, decode_as: str = "soft", batch: int = 1024
                ) -> tuple[np.ndarray, np.ndarray | None]:
        """(N,) values and, for c2f, (N, K) bin probabilities; eval mode, no gradients."""
        was = self.training
        self.eval()
        values, probs = [], []
        for i in range(0, len(x), batch):
            out = self(x[i:i + batch])
            if "logits" in out:
                values.append(decode(out["logits"], out["offsets"], self.centres, self.width,
                                     decode_as))
                probs.append(torch.softmax(out["logits"], dim=1))
            else:
                values.append(out["value"])
        self.train(was)
        v = torch.cat(values).double().numpy() if values else np.zeros(0)
        return v, (torch.cat(probs).double().numpy() if probs else None)


def decode(logits: torch.Tensor, offsets: torch.Tensor, centres: torch.Tensor,
           width: torch.Tensor, how: str = "soft") -> torch.Tensor:
    """(B,) values from bin logits and offsets (both (B, K)).

    ``soft``: sum_k p_k (centre_k + width * offset_k); ``hard``: the most likely bin's centre
    plus its offset.
    """
    per_bin = centres[None, :] + width * offsets  # (B, K)
    if how == "hard":
        k = logits.argmax(dim=1, keepdim=True)
        return per_bin.gather(1, k)[:, 0]
    if how == "soft":
        return (torch.softmax(logits, dim=1) * per_bin).sum(dim=1)
    raise ValueError(f"unknown decode {how!r}; valid: soft, hard")
