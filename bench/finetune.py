"""Finetune benchmarks: training throughput of a backbone, and a linear probe of its features.

    # training images/s (forward + backward + SGD step) on random input, no data loading
    .venv/bin/python bench/finetune.py speed --backbone tsn_r50 --crop 224 --segments 8 \
        --batch 4 --steps 5 [--device cuda --amp]

    # linear probe: logistic regression on mean-pooled (over T) features, train -> val singles;
    # its L2 strength chosen by cross-validation on train, folds grouped by participant
    .venv/bin/python bench/finetune.py probe features/synthetic/tsn_r18-rgb-8seg.h5 [more.h5]

``speed`` counts images = videos x segments per second (a flow "image" has 10 channels; an I3D
"image" is a clip of 8 frames), the unit mmaction2 reports. ``probe`` with two files (rgb,
flow) also reports them concatenated (joined on video_id). Both print one line per result; nothing is written.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def speed(args: argparse.Namespace) -> None:
    import torch
    from torch import nn

    from extract.backbones import build_recognizer
    from finetune.model import SegmentClassifier

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    model = build_recognizer(args.backbone, args.modality, num_segments=args.segments)
    net = SegmentClassifier(model, args.segments).to(device)
    cl = cuda or args.channels_last
    if cl:
        net.to(memory_format=torch.channels_last)
    net.train()
    opt = torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.9, weight_decay=1e-4)
    from extract.backbones import get_spec

    c = get_spec(args.backbone).in_channels(args.modality)  # 3, 10; I3D: 3 or 2 x 8 frames
    n = args.batch * args.segments
    x = torch.randn(n, c, args.crop, args.crop, device=device)
    if cl:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 14, (args.batch,), device=device)
    dtype = None
    if args.amp:  # CUDA: bf16 where supported, else fp16; CPU: bf16 (AVX512-BF16 / AMX)
        dtype = torch.float16 if cuda and not torch.cuda.is_bf16_supported() else torch.bfloat16
    scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)

    def step() -> None:
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            out = net(x)
        loss = nn.functional.cross_entropy(out.float(), y)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
        nn.utils.clip_grad_norm_(net.parameters(), 40.0)
        scaler.step(opt)
        scaler.update()

    for _ in range(args.warmup):
        step()
    if cuda:
        torch.cuda.synchronize()
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(args.steps):
        step()
    if cuda:
        torch.cuda.synchronize()
    secs = time.perf_counter() - t0
    cpu = time.process_time() - c0  # steadier than wall time on a shared machine
    name = torch.cuda.get_device_name(device) if cuda else f"cpu x{torch.get_num_threads()} threads"
    sys.stdout.write(
        f"{args.backbone} {args.modality} train step at {args.crop}x{args.crop}, {args.batch} videos "
        f"x {args.segments} segments, amp={'bf16' if dtype == torch.bfloat16 else 'fp16' if dtype else 'off'}, "
        f"{name}: {n * args.steps / secs:.1f} images/s ({secs / args.steps * 1000:.0f} ms/step, "
        f"CPU {cpu / args.steps * 1000:.0f} ms/step)\n")


def probe(args: argparse.Namespace) -> None:
    from pipeline.features import join, read_features

    sets = [read_features(p) for p in args.files]
    base = sets[0]
    joined = [base]
    for other in sets[1:]:
        base, o = join(base, other)
        joined = [join(base, s)[1] for s in joined] + [o]
    results = [(f"{s.attrs.get('backbone')}-{s.attrs.get('modality')} "
                f"(init {s.attrs.get('init', '?')})", [s]) for s in sets]
    if len(sets) > 1:
        results.append(("+".join(str(s.attrs.get("modality")) for s in sets) + " concatenated",
                        joined))
    for name, group in results:
        acc, mca, n_tr, n_va, c = linear_probe(group, args.C)
        sys.stdout.write(f"{name}: linear probe val top-1 {acc:.3f}, mean class acc {mca:.3f} "
                         f"(C={c:g}; {n_tr} train / {n_va} val single-class videos)\n")


C_GRID = (0.001, 0.01, 0.1, 1.0, 10.0)


def linear_probe(group, C: float | None = None) -> tuple[float, float, int, int, float]:
    """Logistic regression on mean-pooled features: train-split singles -> val-split singles.
    ``group``: FeatureSets with the same rows (joined on video_id); their features are
    concatenated. ``C`` (inverse L2 strength) None: picked from :data:`C_GRID` by
    cross-validation on the *train* split, folds grouped by participant (so a fold never sees
    its own people, as val does); val is touched once. Returns (top-1, mean class accuracy,
    n_train, n_val, C)."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.model_selection import GridSearchCV, GroupKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    first = group[0]
    single = first.labels.sum(1) == 1
    x = np.concatenate([g.features.mean(1) for g in group], axis=1)  # (N, sum D)
    y = first.labels.argmax(1)
    tr = single & (first.split == "train")
    va = single & (first.split == "val")
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=C or 1.0, max_iter=3000))
    if C is None:
        people = first.participant[tr]
        search = GridSearchCV(clf, {"logisticregression__C": list(C_GRID)},
                              cv=GroupKFold(n_splits=min(4, len(set(people)))))
        search.fit(x[tr], y[tr], groups=people)
        clf, C = search.best_estimator_, float(search.best_params_["logisticregression__C"])
    else:
        clf.fit(x[tr], y[tr])
    pred = clf.predict(x[va])
    return (float((pred == y[va]).mean()), float(balanced_accuracy_score(y[va], pred)),
            int(tr.sum()), int(va.sum()), float(C))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("speed", help="training images/s on random input")
    s.add_argument("--backbone", default="tsn_r50")
    s.add_argument("--modality", default="rgb", choices=("rgb", "flow"))
    s.add_argument("--crop", type=int, default=224)
    s.add_argument("--segments", type=int, default=8)
    s.add_argument("--batch", type=int, default=4, help="videos per step")
    s.add_argument("--steps", type=int, default=5)
    s.add_argument("--warmup", type=int, default=2)
    s.add_argument("--device", default="cpu")
    s.add_argument("--amp", action="store_true", help="mixed precision: bf16 autocast (fp16 on CUDA without bf16)")
    s.add_argument("--channels-last", action="store_true", help="NHWC layout (always on CUDA)")
    s.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    pr = sub.add_parser("probe", help="linear probe of feature files")
    pr.add_argument("files", nargs="+")
    pr.add_argument("--C", type=float, default=None,
                    help="inverse L2 strength (default: chosen by participant-grouped CV on train)")
    args = p.parse_args()
    speed(args) if args.cmd == "speed" else probe(args)


if __name__ == "__main__":
    main()
