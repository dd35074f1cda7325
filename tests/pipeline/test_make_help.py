"""`make help` lists every target the Makefile defines and every variable a user may set."""
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MAKEFILE = ROOT / "Makefile"


def makefile_targets(text: str) -> set[str]:
    """Names a user can type: rule targets and .PHONY entries, without file targets
    (`data/synthetic/manifest.csv`, `$(STAMP)`) or variable assignments (`X := ...`)."""
    names: set[str] = set()
    for line in text.splitlines():
        if line.startswith(("\t", "#")):  # recipe lines, comments
            continue
        m = re.match(r"^([^:=#\s][^:=#]*?)\s*:(?![:=])", line)
        if not m:
            continue
        for name in m.group(1).split():
            if name == ".PHONY":
                continue
            if re.fullmatch(r"[A-Za-z][\w-]*", name):
                names.add(name)
        if m.group(1).strip() == ".PHONY":
            names.update(line.split(":", 1)[1].split())
    return names


def makefile_variables(text: str) -> set[str]:
    """The variables meant to be set from the command line: those given a default with `?=`."""
    return set(re.findall(r"^([A-Z][A-Z0-9_]*)\s*\?=", text, re.M))


def test_the_parsers_find_what_they_should():
    text = ("X := 1\nCONFIG ?= a.toml\n.PHONY: a b-c\na: b-c\n\t@echo 'z: y'\n"
            "data/x.csv: | $(STAMP)\n$(STAMP): r.txt\nb-c:\n# q: r\n")
    assert makefile_targets(text) == {"a", "b-c"}
    assert makefile_variables(text) == {"CONFIG"}


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_help_lists_every_target_and_variable():
    text = MAKEFILE.read_text()
    out = subprocess.run(["make", "-s", "--no-print-directory", "-C", str(ROOT), "help"],
                         capture_output=True, text=True, check=True, timeout=60).stdout
    listed = set(re.findall(r"^\s+make (\S+)", out, re.M))
    targets = makefile_targets(text)
    # the ones the issue named, so that a broken parser cannot pass by finding nothing
    assert targets >= {"all", "test", "setup", "info", "data", "flow", "finetune", "extract",
                       "train", "eval", "serve", "test-browser", "test-slow", "browser-deps",
                       "bench-extract", "bench-train", "clean", "clean-all", "help"}
    assert sorted(targets - listed) == [], "targets missing from `make help`"
    assert sorted(listed - targets) == [], "`make help` lists targets the Makefile lacks"
    variables = set(re.findall(r"^\s+([A-Z][A-Z0-9_]*)=", out, re.M))
    assert sorted(makefile_variables(text) - variables) == [], "variables missing from help"
    assert {"CONFIG", "BACKBONE", "MODEL", "RUN", "ARGS"} <= variables
