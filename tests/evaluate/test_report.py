"""The report writes every file from synthetic scores, and the tables carry the numbers."""
import numpy as np

from evaluate import runner as R
from evaluate.report import Entry, comparison_rows, write_report
from pipeline.taxonomy import NUM_CLASSES, composite_label_sets, multi_hot


def _entries(rng):
    sets = composite_label_sets()
    takes = [sets[i] for i in rng.integers(len(sets), size=10)]
    labels = np.stack([multi_hot(s) for s in takes for _ in range(2)])
    take_id = np.repeat([f"t{i}" for i in range(10)], 2)
    view = np.tile([1, 2], 10)
    val_labels = np.stack([multi_hot([k]) for k in range(NUM_CLASSES) for _ in range(2)])
    val_take = np.repeat([f"v{k}" for k in range(NUM_CLASSES)], 2)
    out = []
    cfg = R.EvalConfig()
    for run, head in (("cpr_clip", "clip"), ("bce", "bce")):
        s = labels + rng.normal(size=labels.shape)
        vs = val_labels + rng.normal(size=val_labels.shape)
        m, _, pred, true = R.evaluate_head(
            head, {"scores": s, "labels": labels, "take_id": take_id, "view": view},
            {"scores": vs, "labels": val_labels, "take_id": val_take, "view": np.tile([1, 2], 14)},
            cfg)
        out.append(Entry(run, run, head, m, s, labels, pred, true, ["features from random init"]))
    return out


def test_report_writes_md_html_and_pngs(tmp_path):
    entries = _entries(np.random.default_rng(0))
    paths = write_report(entries, tmp_path / "rep", command="cprclip eval")
    names = {p.name for p in (tmp_path / "rep").iterdir()}
    assert {"report.md", "report.html", "per_class_ap.png", "pr_curves.png", "map_by_errors.png",
            "cooccurrence-cpr_clip-clip.png", "cooccurrence-bce-bce.png"} <= names
    assert any(n.startswith("pr_per_class-") for n in names)
    for p in paths.values():
        if p.suffix == ".png":
            assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = (tmp_path / "rep" / "report.html").read_text()
    # self-contained: every PNG embedded, no file reference
    assert html.count("data:image/png;base64,") == sum(n.endswith(".png") for n in names)
    assert ".png'" not in html
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "random init" in md and "(per_class_ap.png)" in md
    header, rows = comparison_rows(entries)
    want = f"{100 * entries[0].metrics['test']['video']['map']['value']:.1f}"
    assert rows[0][header.index("mAP")] == want and f"| {want} |" in md
