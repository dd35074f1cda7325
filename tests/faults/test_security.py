"""Issue 7 part 5: no stage unpickles untrusted data or runs a shell on its input.

The source scan walks the syntax tree of every module of the pipeline, so a new call site that
unpickles (pickle.load, torch.load without weights_only=True, np.load(allow_pickle=True)) or
runs a shell (shell=True, os.system, os.popen, eval/exec) fails this test."""
from __future__ import annotations

import ast

from fault_media import ROOT

PACKAGES = ("pipeline", "synth", "extract", "train", "evaluate", "assist", "bench")


def _name(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_name(node.value)}.{node.attr}"
    return ""


def _kw(call: ast.Call, name: str):
    for k in call.keywords:
        if k.arg == name:
            return k.value
    return None


def unsafe_calls(source: str, filename: str) -> list[str]:
    bad = []
    for node in ast.walk(ast.parse(source, filename)):
        if not isinstance(node, ast.Call):
            continue
        fn = _name(node.func)
        where = f"{filename}:{node.lineno}: {fn}"
        if fn in ("pickle.load", "pickle.loads", "pickle.Unpickler", "cPickle.load",
                  "dill.load", "joblib.load", "marshal.loads", "shelve.open", "yaml.load",
                  "os.system", "os.popen", "eval", "exec", "subprocess.getoutput",
                  "subprocess.getstatusoutput"):
            bad.append(where)
        elif fn.endswith("torch.load"):
            wo = _kw(node, "weights_only")
            if not (isinstance(wo, ast.Constant) and wo.value is True):
                bad.append(f"{where} without weights_only=True")
        elif fn in ("np.load", "numpy.load"):
            ap = _kw(node, "allow_pickle")
            if ap is not None and not (isinstance(ap, ast.Constant) and ap.value is False):
                bad.append(f"{where} with allow_pickle")
        sh = _kw(node, "shell")
        if sh is not None and not (isinstance(sh, ast.Constant) and sh.value is False):
            bad.append(f"{where} with shell=True")
    return bad


def test_the_scanner_finds_what_it_looks_for():
    src = ("import pickle, torch, numpy as np, os, subprocess\n"
           "pickle.load(f)\ntorch.load(p)\ntorch.load(p, weights_only=False)\n"
           "np.load(p, allow_pickle=True)\nsubprocess.run(c, shell=True)\nos.system(c)\n"
           "eval(s)\nmodel.eval()\ntorch.load(p, weights_only=True)\nnp.load(p)\n")
    got = unsafe_calls(src, "x.py")
    assert [g.split(":")[1] for g in got] == ["2", "3", "4", "5", "6", "7", "8"], got


def test_no_stage_unpickles_or_runs_a_shell():
    bad = []
    for pkg in PACKAGES:
        for f in sorted((ROOT / pkg).rglob("*.py")):
            bad += unsafe_calls(f.read_text(encoding="utf-8"), str(f.relative_to(ROOT)))
    assert not bad, "unsafe calls:\n" + "\n".join(bad)
