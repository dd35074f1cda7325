"""Reading pickles that hold only numpy arrays and plain containers: the one place the project
unpickles anything.

A pickle is a program: each ``GLOBAL`` / ``STACK_GLOBAL`` opcode imports a name and ``REDUCE``
calls it, so ``pickle.load`` on a file from elsewhere runs whatever the file asks for. The
CPR-CLIP and CPR-Coach releases ship their features as pickles (lists of ``(label, feature)``
pairs of numpy arrays), so :func:`load_numpy_pickle` reads them in two passes:

1. **Check.** :func:`check_stream` walks the opcodes with :mod:`pickletools` (which executes
   nothing). A truncated stream or a malformed opcode is an error, and so is every global that
   is not in :data:`ALLOWED`, named in the error before any object is built.
2. **Load.** :class:`RestrictedUnpickler` builds the objects. Its ``find_class`` hands out the
   objects of :data:`ALLOWED` from a fixed table and never imports a module, so even a global
   the first pass could not name (one assembled in an unusual way) is refused before it could
   be called.

What is admitted: numpy array, dtype and scalar reconstruction (``_reconstruct``, ``scalar``,
protocol 5's ``_frombuffer``, under numpy 1's
``numpy.core`` and numpy 2's ``numpy._core`` names), plain builtins (list, tuple, dict, set,
int, float, complex, str, bytes, bool), ``_codecs.encode`` (protocol-2 pickles store bytes
through it) and ``copyreg._reconstructor`` (protocol 0/1 object rebuilding; the class it is
handed must itself pass this table). Object arrays are refused after loading: their elements
would be arbitrary Python objects.

Every error is a :class:`UnsafePickleError` with one line naming the file and the problem.
"""
from __future__ import annotations

import _codecs
import copyreg
import io
import pickle
import pickletools
from pathlib import Path
from typing import Any

import numpy as np

# numpy 2 moved its internals from numpy.core to numpy._core; pickles name either.
try:
    from numpy._core import multiarray as _multiarray, numeric as _numeric
except ImportError:  # numpy < 1.26 has only numpy.core
    from numpy.core import multiarray as _multiarray, numeric as _numeric  # type: ignore[no-redef]

_NUMPY = {
    ("multiarray", "_reconstruct"): _multiarray._reconstruct,  # ndarray.__reduce__'s constructor
    ("multiarray", "scalar"): _multiarray.scalar,  # numpy scalars (np.float32(1.0), np.int64(3))
    ("numeric", "_frombuffer"): _numeric._frombuffer,  # protocol 5: an array from its raw bytes
}

_BUILTINS = {name: getattr(__import__("builtins"), name) for name in
             ("list", "tuple", "dict", "set", "frozenset", "int", "float", "complex", "str",
              "bytes", "bytearray", "bool")}

# (module, name) -> the object handed out. Nothing outside this table is ever imported.
ALLOWED: dict[tuple[str, str], Any] = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    **{(f"{pkg}.{mod}", name): obj for pkg in ("numpy.core", "numpy._core")
       for (mod, name), obj in _NUMPY.items()},
    **{("builtins", name): obj for name, obj in _BUILTINS.items()},
    # protocol 0-2 pickles written by Python 2 name the builtins module __builtin__
    **{("__builtin__", name): obj for name, obj in _BUILTINS.items()},
    ("_codecs", "encode"): _codecs.encode,
    ("copyreg", "_reconstructor"): copyreg._reconstructor,
    ("copy_reg", "_reconstructor"): copyreg._reconstructor,
}

_STRING_OPS = {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "STRING",
               "BINSTRING", "SHORT_BINSTRING"}


class UnsafePickleError(ValueError):
    """A pickle that is refused or unreadable; the message is one line naming the file."""


def check_stream(data: bytes, source: str | Path = "<bytes>") -> list[tuple[str, str]]:
    """Walk the opcodes of one pickle without executing any; return the globals it names.

    Raises :class:`UnsafePickleError` on a truncated or malformed stream, on bytes after the
    pickle's end, and on a global outside :data:`ALLOWED`.
    """
    found: list[tuple[str, str]] = []
    recent: list[Any] = []  # the values of the last pushes that were strings (or None)
    memo: dict[int, Any] = {}
    end = -1
    try:
        for op, arg, pos in pickletools.genops(io.BytesIO(data)):
            name = op.name
            if name == "GLOBAL" or name == "INST":
                module, _, attr = str(arg).partition(" ")
                found.append((module, attr))
            elif name == "STACK_GLOBAL":
                # the pickler pushes the module and the name strings right before it
                if len(recent) >= 2 and all(isinstance(v, str) for v in recent[-2:]):
                    found.append((recent[-2], recent[-1]))
                else:  # unusual assembly: find_class still refuses anything not allowed
                    found.append(("?", "?"))
            if name in _STRING_OPS:
                recent.append(arg)
            elif name in ("MEMOIZE",):
                memo[len(memo)] = recent[-1] if recent else None
            elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
                memo[int(arg)] = recent[-1] if recent else None
            elif name in ("GET", "BINGET", "LONG_BINGET"):
                recent.append(memo.get(int(arg)))
            elif name not in ("FRAME", "PROTO"):
                recent.append(None)
            del recent[:-2]
            if name == "STOP":
                end = pos + 1
    except (ValueError, EOFError, IndexError) as e:  # genops: truncated or garbage
        raise UnsafePickleError(f"{source}: not a complete pickle "
                                f"({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    if end < 0:
        raise UnsafePickleError(f"{source}: not a complete pickle (no STOP opcode)")
    if data[end:].strip(b"\x00"):
        raise UnsafePickleError(f"{source}: {len(data) - end} unexpected byte(s) after "
                                "the pickle's end")
    for module, attr in found:
        if (module, attr) != ("?", "?") and (module, attr) not in ALLOWED:
            raise UnsafePickleError(f"{source}: refused to load class {module}.{attr}: "
                                    "only numpy arrays and plain containers are read")
    return found


class RestrictedUnpickler(pickle.Unpickler):
    """An Unpickler whose globals come only from :data:`ALLOWED`; nothing is imported."""

    def __init__(self, file, source: str | Path = "<bytes>"):
        super().__init__(file, fix_imports=False, encoding="latin1")
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        try:
            return ALLOWED[(module, name)]
        except KeyError:
            raise UnsafePickleError(f"{self.source}: refused to load class "
                                    f"{module}.{name}: only numpy arrays and plain containers "
                                    "are read") from None

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError(f"{self.source}: refused a persistent id; only numpy "
                                "arrays and plain containers are read")


def _check_arrays(obj: Any, source: str | Path, depth: int = 0) -> None:
    """Refuse object arrays (their elements could be anything) anywhere in ``obj``."""
    if depth > 100:
        raise UnsafePickleError(f"{source}: containers nested more than 100 deep")
    if isinstance(obj, np.ndarray):
        if obj.dtype.hasobject:
            raise UnsafePickleError(f"{source}: refused an object array "
                                    f"(dtype {obj.dtype}); only numeric arrays are read")
    elif isinstance(obj, (list, tuple, set, frozenset)):
        for v in obj:
            _check_arrays(v, source, depth + 1)
    elif isinstance(obj, dict):
        for k, v in obj.items():
            _check_arrays(k, source, depth + 1)
            _check_arrays(v, source, depth + 1)


def loads_numpy_pickle(data: bytes, source: str | Path = "<bytes>") -> Any:
    """Check then load one pickle held in ``data`` (see the module docstring)."""
    check_stream(data, source)
    try:
        obj = RestrictedUnpickler(io.BytesIO(data), source).load()
    except UnsafePickleError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
            IndexError, KeyError, MemoryError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UnsafePickleError(f"{source}: unreadable pickle ({first[:200]})") from None
    _check_arrays(obj, source)
    return obj


def load_numpy_pickle(path: str | Path) -> Any:
    """Read the pickle file at ``path`` if it holds only numpy arrays and plain containers."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UnsafePickleError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise UnsafePickleError(f"{path}: is a folder, not a pickle file") from None
    except OSError as e:
        raise UnsafePickleError(f"{path}: cannot read ({e.strerror or e})") from None
    if not data:
        raise UnsafePickleError(f"{path}: empty file, not a pickle")
    return loads_numpy_pickle(data, path)


__all__ = ["ALLOWED", "RestrictedUnpickler", "UnsafePickleError", "check_stream",
           "load_numpy_pickle", "loads_numpy_pickle"]
