"""The restricted unpickler (issue 18): numpy arrays and plain containers load; anything else is
refused before it runs, with one line naming the file and the class."""
from __future__ import annotations

import io
import os
import pickle

import numpy as np
import pytest

from pipeline.pickle_safe import (ALLOWED, RestrictedUnpickler, UnsafePickleError, check_stream,
                                  load_numpy_pickle, loads_numpy_pickle)

PROTOCOLS = range(0, pickle.HIGHEST_PROTOCOL + 1)


class TouchOnLoad:
    """Unpickling this calls ``open(marker, "w")``: it creates the marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


class SystemOnLoad:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _one_line(e: BaseException) -> str:
    msg = str(e)
    assert msg and "\n" not in msg, repr(msg)
    return msg


def _authors_like():
    return [(np.array([[3]], dtype=np.int64), np.arange(8, dtype=np.float32)),
            (np.eye(14, dtype=np.float32)[2], np.float32(1.5), np.int64(7)),
            {"ids": [1, 2.5, "x", b"y", None, True, (1, 2)], "s": {1, 2}},
            np.arange(12.0).reshape(3, 4)[:, ::2]]  # a non-contiguous view pickles as a copy


@pytest.mark.parametrize("proto", PROTOCOLS)
def test_numpy_and_containers_load_in_every_protocol(proto):
    want = _authors_like()
    got = loads_numpy_pickle(pickle.dumps(want, protocol=proto))
    assert got[0][0].dtype == np.int64 and got[0][0][0][0] == 3
    np.testing.assert_array_equal(got[0][1], want[0][1])
    assert got[0][1].dtype == np.float32
    np.testing.assert_array_equal(got[1][0], want[1][0])
    assert got[1][1] == np.float32(1.5) and type(got[1][1]) is np.float32
    assert got[2] == want[2]
    np.testing.assert_array_equal(got[3], want[3])


@pytest.mark.parametrize("proto", PROTOCOLS)
@pytest.mark.parametrize("kind", [TouchOnLoad, SystemOnLoad])
def test_code_in_a_pickle_is_refused_and_never_runs(tmp_path, proto, kind):
    # control: plain pickle would run it, so the marker proves the test can fail
    control = tmp_path / "control"
    pickle.loads(pickle.dumps(kind(control), protocol=proto))
    assert control.exists()
    marker = tmp_path / "marker"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps([(np.zeros(2), kind(marker))], protocol=proto))
    with pytest.raises(UnsafePickleError) as e:
        load_numpy_pickle(path)
    msg = _one_line(e.value)
    assert str(path) in msg and "refused" in msg
    assert ("builtins.open" in msg or "io.open" in msg) if kind is TouchOnLoad else "system" in msg
    assert not marker.exists()


def test_find_class_refuses_what_the_opcode_scan_cannot_name(tmp_path):
    """A global assembled unusually (a POP between the two strings) is not named by the scan;
    the unpickler's own table refuses it before it is called."""
    marker = tmp_path / "marker"
    cmd = f"touch {marker}".encode()
    data = (b"\x80\x04" + b"\x8c\x05posix" + b"K\x01" + b"0"  # push 'posix', push 1, POP it
            + b"\x8c\x06system" + b"\x93"  # STACK_GLOBAL -> posix.system
            + b"\x8c" + bytes([len(cmd)]) + cmd + b"\x85" + b"R" + b".")  # (cmd,) REDUCE STOP
    assert ("?", "?") in check_stream(data)  # the scan could not name it ...
    with pytest.raises(UnsafePickleError, match="refused to load class posix.system"):
        loads_numpy_pickle(data, "crafted.pkl")  # ... and the load refuses it
    assert not marker.exists()
    with pytest.raises(UnsafePickleError, match="posix.system"):
        RestrictedUnpickler(io.BytesIO(data), "crafted.pkl").load()


@pytest.mark.parametrize("module,name", [("builtins", "eval"), ("builtins", "getattr"),
                                         ("numpy", "load"), ("numpy.testing", "assert_equal"),
                                         ("subprocess", "Popen"), ("__builtin__", "eval")])
def test_globals_outside_the_table_are_refused(module, name):
    data = b"\x80\x02c" + f"{module}\n{name}\n".encode() + b"."
    with pytest.raises(UnsafePickleError) as e:
        loads_numpy_pickle(data, "f.pkl")
    assert f"{module}.{name}" in _one_line(e.value)


def test_the_table_holds_only_numpy_construction_and_plain_types():
    for (module, name), obj in ALLOWED.items():
        assert module.split(".")[0] in ("numpy", "builtins", "__builtin__", "_codecs", "copyreg",
                                        "copy_reg"), module
        if module in ("builtins", "__builtin__"):
            assert name in ("list", "tuple", "dict", "set", "frozenset", "int", "float", "complex",
                            "str", "bytes", "bytearray", "bool")


def test_object_arrays_are_refused():
    data = pickle.dumps(np.array([1, "a", None], dtype=object))
    with pytest.raises(UnsafePickleError, match="object array"):
        loads_numpy_pickle(data, "obj.pkl")


@pytest.mark.parametrize("cut", [1, 2, 10, 0.5, -1])
def test_truncated_stream_is_one_line_naming_the_file(tmp_path, cut):
    data = pickle.dumps(_authors_like(), protocol=4)
    n = int(len(data) * cut) if isinstance(cut, float) else cut
    path = tmp_path / "cut.pkl"
    path.write_bytes(data[:n])
    with pytest.raises(UnsafePickleError) as e:
        load_numpy_pickle(path)
    msg = _one_line(e.value)
    assert str(path) in msg and "not a complete pickle" in msg


@pytest.mark.parametrize("content,match", [(b"", "empty"), (b"hello world", "not a complete"),
                                           (pickle.dumps([1]) + b"junk", "after the pickle"),
                                           (b"\x89HDF\r\n\x1a\n" + bytes(64), "not a complete")])
def test_garbage_is_one_line(tmp_path, content, match):
    path = tmp_path / "x.pkl"
    path.write_bytes(content)
    with pytest.raises(UnsafePickleError, match=match) as e:
        load_numpy_pickle(path)
    assert str(path) in _one_line(e.value)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(UnsafePickleError, match="not found"):
        load_numpy_pickle(tmp_path / "nope.pkl")
    with pytest.raises(UnsafePickleError, match="folder"):
        load_numpy_pickle(tmp_path)
