"""Issue 13 parts 4 and 8: rules every library module keeps, checked on its syntax tree.

- no ``print(`` (one logging path; a CLI writes its output through ``sys.stdout``);
- only ``pipeline/features.py`` imports ``h5py`` (it alone knows the HDF5 layout);
- only ``pipeline/features.py`` reads a feature file's attributes by their string keys
  (``attrs["config_json"]``, ``feature_attrs[m].get("init")``); everyone else reads the typed
  ``FeatureRecipe``'s fields.

Library code is every top-level package of the repository (a folder with ``__init__.py``), so a
new package is scanned without editing this test; ``tests/`` and ``bench/`` are not packages.
"""
from __future__ import annotations

import ast
from pathlib import Path

from pipeline.features import RECIPE_KEYS

ROOT = Path(__file__).resolve().parents[2]
FEATURES = "pipeline/features.py"
# Attribute keys that name nothing but a feature-file attribute: flagged on any receiver.
ONLY_ATTR_KEYS = ("config_json", "flow_recipe")
# Every attribute key: flagged when the receiver's name says it holds attributes.
ATTR_KEYS = (*RECIPE_KEYS, "schema_version")


def library_files() -> list[Path]:
    pkgs = sorted(p.parent for p in ROOT.glob("*/__init__.py")
                  if p.parent.name not in ("tests", "bench"))
    return [f for pkg in pkgs for f in sorted(pkg.rglob("*.py"))]


def _string_key(node: ast.AST) -> tuple[str, ast.AST] | None:
    """(key, receiver) of ``x["key"]`` (a read) or ``x.get("key", ...)``."""
    if (isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load)
            and isinstance(node.slice, ast.Constant) and isinstance(node.slice.value, str)):
        return node.slice.value, node.value
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and node.func.attr == "get" and node.args and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)):
        return node.args[0].value, node.func.value
    return None


def rule_breaks(source: str, filename: str) -> list[str]:
    bad = []
    features_module = filename.replace("\\", "/").endswith(FEATURES)
    for node in ast.walk(ast.parse(source, filename)):
        where = f"{filename}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print":
            bad.append(f"{where}: print( in library code (use logging)")
        if features_module:
            continue
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "h5py" for a in node.names):
            bad.append(f"{where}: imports h5py outside {FEATURES}")
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "h5py":
            bad.append(f"{where}: imports from h5py outside {FEATURES}")
        hit = _string_key(node)
        if hit:
            key, receiver = hit
            names_attrs = "attr" in ast.unparse(receiver).lower()
            if key in ONLY_ATTR_KEYS or (key in ATTR_KEYS and names_attrs):
                bad.append(f"{where}: reads feature attribute {key!r} by its string key "
                           "(use pipeline.features.FeatureRecipe)")
    return bad


def test_the_scanner_finds_what_it_looks_for():
    src = ("import h5py\nfrom h5py import File\nprint('x')\n"
           "a = attrs['config_json']\nb = feature_attrs[m].get('init')\n"
           "c = self.attrs['flow'].get('flow_recipe', '')\nd = rec['config_json']\n"
           "e = attrs.get('backbone', '?')\n"
           # not feature attributes, or not reads: none of these is a break
           "record['checkpoint_sha256'] = s\nf = cfg['backbone']\ng = recipe.config_json\n"
           "log.info('x')\nsys.stdout.write('x')\nh = meta.get('init')\n")
    got = [int(b.split(":")[1]) for b in rule_breaks(src, "pkg/x.py")]
    assert got == [1, 2, 3, 4, 5, 6, 7, 8], rule_breaks(src, "pkg/x.py")
    # the feature store itself may do all of it, except print
    assert [b.split(":")[1] for b in rule_breaks(src, FEATURES)] == ["3"]


def test_library_files_cover_every_package():
    found = {f.relative_to(ROOT).parts[0] for f in library_files()}
    assert {"pipeline", "extract", "train", "evaluate"} <= found
    assert not found & {"tests", "bench"}


def test_library_code_keeps_the_rules():
    bad = []
    for f in library_files():
        bad += rule_breaks(f.read_text(encoding="utf-8"), str(f.relative_to(ROOT)))
    assert not bad, "library code breaks the rules:\n" + "\n".join(bad)
