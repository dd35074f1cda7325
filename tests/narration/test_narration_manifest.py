"""The manifest's narration column: written by synth, resolved, checked like the other optional
columns (one line naming file, row and problem), found beside the manifest when empty."""
from __future__ import annotations

from pathlib import Path

from pipeline.cli import main as cli_main
from pipeline.manifest import COLUMNS, MEASURES, load_manifest, parse_manifest
from synth.config import SynthConfig
from synth.runner import generate

HEADER = "video_id,path,take_id,view,participant,split,labels,narration\n"


def _write(tmp_path: Path, rows: list[str]) -> Path:
    (tmp_path / "narration").mkdir(exist_ok=True)
    (tmp_path / "narration" / "t1.json").write_text("{}")
    p = tmp_path / "manifest.csv"
    p.write_text(HEADER + "".join(r + "\n" for r in rows))
    return p


def test_column_sits_before_the_measures():
    assert COLUMNS[-3:] == ("narration", *MEASURES)


def test_resolved_and_missing_file_named(tmp_path):
    p = _write(tmp_path, ["a_v1,a.mp4,t1,1,p1,train,0,narration/t1.json",
                          "b_v1,b.mp4,t2,1,p1,train,1,narration/nope.json"])
    for v in ("a.mp4", "b.mp4"):
        (tmp_path / v).write_bytes(b"x")
    records, errors = parse_manifest(p)
    assert records[0].narration == (tmp_path / "narration" / "t1.json").resolve()
    assert errors == [f"{p}:row 3 (b_v1): narration file "
                      f"{(tmp_path / 'narration' / 'nope.json').resolve()} not found"]


def test_outside_the_dataset_and_disagreeing_views(tmp_path):
    p = _write(tmp_path, ["a_v1,a.mp4,t1,1,p1,train,0,narration/t1.json",
                          "a_v2,a2.mp4,t1,2,p1,train,0,../elsewhere.json",
                          "a_v3,a3.mp4,t1,3,p1,train,0,"])
    _, errors = parse_manifest(p, check_files=False)
    assert len(errors) == 1 and f"{p}:row 3 (a_v2): narration path" in errors[0]
    assert "leaves the dataset folder" in errors[0]
    # row 4's empty column falls back to narration/t1.json: the same file, no disagreement
    (tmp_path / "narration" / "t1.json").rename(tmp_path / "narration" / "other.json")
    p.write_text(HEADER + "a_v1,a.mp4,t1,1,p1,train,0,narration/other.json\n"
                          "a_v2,a2.mp4,t1,2,p1,train,0,\n")
    _, errors = parse_manifest(p, check_files=False)
    other = (tmp_path / "narration" / "other.json").resolve()
    assert errors == [f"{p}:row 3 (a_v2): take 't1' has narration '' but row 2 (a_v1) says "
                      f"'{other}'"]  # one view of a take without the take's narration
    (tmp_path / "narration" / "t1.json").write_text("{}")
    _, errors = parse_manifest(p, check_files=False)
    assert len(errors) == 1 and f"{p}:row 3 (a_v2): take 't1' has narration '" in errors[0]


def test_empty_column_finds_the_default_file(tmp_path):
    p = _write(tmp_path, ["a_v1,a.mp4,t1,1,p1,train,0,", "b_v1,b.mp4,t2,1,p1,train,1,"])
    recs = load_manifest(p, check_files=False)
    assert recs[0].narration == (tmp_path / "narration" / "t1.json").resolve()
    assert recs[1].narration is None


def test_synth_writes_the_column_and_narrate_fills_an_old_dataset(tmp_path, monkeypatch):
    monkeypatch.setenv("CPRCLIP_NO_PROGRESS", "1")
    keys = dict(dataset="tiny", manifest=str(tmp_path / "tiny" / "manifest.csv"), participants=2,
                held_out=1, frames=12, resolution="32x24", n_double=1, n_triple=0, n_quad=0,
                views=1, workers=1)
    manifest = generate(SynthConfig(**keys), show_progress=False)
    rows = load_manifest(manifest)
    assert all(r.narration == (manifest.parent / "narration" / f"{r.take_id}.json").resolve()
               for r in rows)
    assert "narration/p1_c00.json" in manifest.read_text()
    # an old dataset: no narration files, no column; `cprclip narrate` writes the files only
    import shutil

    import csv

    shutil.rmtree(manifest.parent / "narration")
    table = list(csv.reader(manifest.open()))
    col = table[0].index("narration")
    with manifest.open("w", newline="") as f:  # the manifest of a synth before narrations
        csv.writer(f).writerows([r[:col] + r[col + 1:] for r in table])
    before = manifest.read_bytes()
    assert all(r.narration is None for r in load_manifest(manifest))
    rc = cli_main(["narrate", *[f"{k}={v}" for k, v in keys.items()]])
    assert rc == 0 and manifest.read_bytes() == before  # the manifest is not rewritten
    assert all(r.narration is not None and r.narration.is_file() for r in load_manifest(manifest))
    # another dataset's config is refused: the narrations would describe other videos
    assert cli_main(["narrate", *[f"{k}={v}" for k, v in {**keys, "seed": 3}.items()]]) == 2
