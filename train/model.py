"""The video head: input standardisation, pooling over segments, a small MLP, a projection to the text space (CLIP)
and/or a classification layer (BCE).

Shapes: B batch, T segments, D feature dim (all modalities concatenated), E text embedding
dim, C classes, K prompts. With ``fusion="late"`` each modality gets its own stream and the
streams' scores are averaged; with ``"concat"`` one stream reads the concatenated features.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

MAX_SEGMENTS = 64  # longest T the transformer pooling has position codes for
MAX_LOGIT_SCALE = 100.0  # CLIP's clamp: keeps a learnable temperature from running away


@dataclass(frozen=True)
class HeadArgs:
    """Everything needed to rebuild a head; stored with every checkpoint."""

    dims: tuple[int, ...]  # per-modality D
    fusion: str  # "concat" | "late"
    pooling: str  # "mean" | "attention" | "tconv" | "transformer" (POOLINGS)
    hidden_dim: int
    dropout: float
    embed_dim: int  # E; 0 = no projection head (no text)
    num_classes: int  # C; 0 = no classification head
    logit_scale: float
    learn_logit_scale: bool

    def to_dict(self) -> dict:
        d = asdict(self)
        d["dims"] = list(self.dims)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "HeadArgs":
        return cls(**{**d, "dims": tuple(d["dims"])})


# How a stream reads its T segments. A visible table of the choices; each is built in Stream.
POOLINGS = {
    "mean": "average over segments (TSN's consensus)",
    "attention": "softmax-weighted average, one learned score per segment",
    "tconv": "1-D temporal convolution (kernel 3) over segments, then mean and max over time",
    "transformer": "one transformer layer over segments (ImagineNet-SA), then mean over time",
}


class Stream(nn.Module):
    """One stream: (B, T, D) -> pooled (B, P) -> hidden (B, H) -> embed (B, E) / logits (B, C).

    P = D for mean and attention pooling; the temporal models (tconv, transformer) first map
    each segment to H so that they see how features change from segment to segment, which
    a plain average throws away (rate, jumps, drifting hands are changes over time).
    """

    def __init__(self, in_dim: int, a: HeadArgs):
        super().__init__()
        if a.pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {a.pooling!r}; valid: {', '.join(POOLINGS)}")
        self.pooling = a.pooling
        self.attn = nn.Linear(in_dim, 1) if a.pooling == "attention" else None
        self.temporal: nn.Module | None = None
        pooled_dim = in_dim
        if a.pooling == "tconv":
            self.temporal = nn.Sequential(nn.Dropout(a.dropout),
                                          nn.Conv1d(in_dim, a.hidden_dim, 3, padding=1), nn.GELU())
            pooled_dim = 2 * a.hidden_dim  # mean and max over time
        elif a.pooling == "transformer":
            self.temporal = nn.Sequential(nn.Dropout(a.dropout), nn.Linear(in_dim, a.hidden_dim))
            # a learned code per segment position: without it self-attention and the mean after it
            # would not see the order of the segments at all
            self.position = nn.Parameter(torch.randn(1, MAX_SEGMENTS, a.hidden_dim) * 0.02)
            self.encoder = nn.TransformerEncoderLayer(a.hidden_dim, nhead=8,
                                                      dim_feedforward=2 * a.hidden_dim,
                                                      dropout=a.dropout, batch_first=True)
            pooled_dim = a.hidden_dim
        self.trunk = nn.Sequential(nn.Linear(pooled_dim, a.hidden_dim), nn.GELU(), nn.Dropout(a.dropout))
        self.proj = nn.Linear(a.hidden_dim, a.embed_dim) if a.embed_dim else None
        self.cls = nn.Linear(a.hidden_dim, a.num_classes) if a.num_classes else None

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, D) standardised -> (B, P)."""
        if self.pooling == "mean":
            return x.mean(dim=1)
        if self.pooling == "attention":
            w = torch.softmax(self.attn(x), dim=1)  # (B, T, 1) weights over segments
            return (w * x).sum(dim=1)
        if self.pooling == "tconv":
            h = self.temporal(x.transpose(1, 2))  # (B, H, T)
            return torch.cat([h.mean(dim=2), h.amax(dim=2)], dim=1)
        t = x.shape[1]
        if t > MAX_SEGMENTS:
            raise ValueError(f"transformer pooling takes at most {MAX_SEGMENTS} segments, got {t}")
        h = self.encoder(self.temporal(x) + self.position[:, :t])  # (B, T, H)
        return h.mean(dim=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        h = self.trunk(self.pool(x))
        emb = F.normalize(self.proj(h), dim=-1) if self.proj is not None else None
        logits = self.cls(h) if self.cls is not None else None
        return emb, logits


class VideoHead(nn.Module):
    def __init__(self, args: HeadArgs):
        super().__init__()
        if args.fusion not in ("concat", "late"):
            raise ValueError(f"unknown fusion {args.fusion!r}; valid: concat, late")
        if not (args.embed_dim or args.num_classes):
            raise ValueError("a head needs a projection (embed_dim) or a classifier (num_classes)")
        self.args = args
        in_dims = [sum(args.dims)] if args.fusion == "concat" else list(args.dims)
        self.streams = nn.ModuleList(Stream(d, args) for d in in_dims)
        # Per-dimension standardisation with training statistics (set_input_stats), saved with
        # the weights. Backbone features (a random-init one especially) share a large common
        # part; the class signal lives in small per-dimension deviations.
        self.register_buffer("in_mean", torch.zeros(sum(args.dims)))
        self.register_buffer("in_std", torch.ones(sum(args.dims)))
        self.log_scale = nn.Parameter(torch.tensor(math.log(args.logit_scale)),
                                      requires_grad=args.learn_logit_scale)

    @torch.no_grad()
    def set_input_stats(self, features: np.ndarray) -> None:
        """Standardise inputs with the mean and std over rows and segments of (N, T, D) features."""
        flat = torch.from_numpy(np.asarray(features, dtype=np.float32)).reshape(-1, features.shape[-1])
        self.in_mean.copy_(flat.mean(dim=0))
        self.in_std.copy_(flat.std(dim=0).clamp_min(1e-6))

    def split(self, x: torch.Tensor) -> list[torch.Tensor]:
        """(B, T, sum D) -> the inputs of each stream."""
        if self.args.fusion == "concat":
            return [x]
        return list(torch.split(x, list(self.args.dims), dim=-1))

    def stream_outputs(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """x (B, T, sum D) -> (per-stream unit embeddings [(B, E)], per-stream logits [(B, C)])."""
        x = (x - self.in_mean) / self.in_std
        outs = [s(xi) for s, xi in zip(self.streams, self.split(x))]
        return [e for e, _ in outs if e is not None], [lg for _, lg in outs if lg is not None]

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor | None]:
        """x (B, T, sum D) -> (per-stream unit embeddings [(B, E)], fused class logits (B, C))."""
        embs, logits = self.stream_outputs(x)
        return embs, (torch.stack(logits).mean(dim=0) if logits else None)

    def scale(self) -> torch.Tensor:
        return self.log_scale.exp().clamp(max=MAX_LOGIT_SCALE)

    @staticmethod
    def similarity(embs: list[torch.Tensor], text: torch.Tensor) -> torch.Tensor:
        """Cosine similarity (B, K) of videos to K unit text embeddings (K, E), mean over streams."""
        return torch.stack([e @ text.t() for e in embs]).mean(dim=0)

    @torch.no_grad()
    def scores(self, x: torch.Tensor, test_text: torch.Tensor | None,
               set_text: torch.Tensor | None = None, set_labels: torch.Tensor | None = None,
               batch: int = 1024) -> dict[str, np.ndarray]:
        """Test-time scores of x (N, T, sum D).

        ``clip`` (N, C): cosine similarity to the C single-class test prompts (K = C rows of
        ``test_text``). ``bce`` (N, C): sigmoid probabilities. ``clip_sets`` (N, C): with
        ``set_text`` (S, E) and ``set_labels`` (S, C), a softmax over the S label-set prompts
        marginalised to classes.
        """
        was = self.training
        self.eval()
        out: dict[str, list[np.ndarray]] = {}
        for i in range(0, len(x), batch):
            embs, logits = self(x[i:i + batch])
            if embs and test_text is not None:
                out.setdefault("clip", []).append(self.similarity(embs, test_text).cpu().numpy())
                if set_text is not None and set_labels is not None:
                    p = torch.softmax(self.scale() * self.similarity(embs, set_text), dim=1)
                    out.setdefault("clip_sets", []).append((p @ set_labels).cpu().numpy())
            if logits is not None:
                out.setdefault("bce", []).append(torch.sigmoid(logits).cpu().numpy())
        self.train(was)
        return {k: np.concatenate(v).astype(np.float32) for k, v in out.items()}
