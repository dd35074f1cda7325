"""Complete-or-absent file writes shared by the stages (finetune runs, eval reports, plots)."""
from __future__ import annotations

import io
import os
from pathlib import Path


def write_atomic(path: Path, data: bytes | bytearray | memoryview | str) -> None:
    """Write ``data`` to a hidden pid-named temporary with plain file I/O and rename it to
    ``path``, so the file is complete or absent. A failed write (e.g. a full disk) removes the
    temporary and raises ``OSError`` naming ``path``."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise OSError(e.errno, e.strerror or str(e), str(path)) from None


def save_figure_png(fig, path: Path, **savefig_kw) -> None:
    """Render a matplotlib ``fig`` as PNG in memory, close it, and :func:`write_atomic` it, so a
    plot on disk is never half a PNG."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", **savefig_kw)
    finally:
        plt.close(fig)
    write_atomic(path, buf.getvalue())
