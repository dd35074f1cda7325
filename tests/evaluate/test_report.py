"""The report writes every file from synthetic scores; the summary, the per-class table and the
decision table carry the numbers of the assistant's own rule."""
import re

import numpy as np

from evaluate import runner as R
from evaluate.report import Entry, best_entry, comparison_rows, per_class_rows, write_report
from pipeline.taxonomy import CLASSES, NUM_CLASSES, composite_label_sets, multi_hot


def _entries(rng):
    sets = composite_label_sets()
    takes = [sets[i] for i in rng.integers(len(sets), size=10)]
    labels = np.stack([multi_hot(s) for s in takes for _ in range(2)])
    take_id = np.repeat([f"t{i}" for i in range(10)], 2)
    view = np.tile([1, 2], 10)
    val_labels = np.stack([multi_hot([k]) for k in range(NUM_CLASSES) for _ in range(2)])
    val_take = np.repeat([f"v{k}" for k in range(NUM_CLASSES)], 2)
    imag = [sets[i] for i in rng.integers(len(sets), size=60)]
    imag_labels = np.stack([multi_hot(s) for s in imag])
    out = []
    cfg = R.EvalConfig()
    for run, head, noise in (("cpr_clip", "clip", 1.0), ("bce", "bce", 0.5)):
        s = labels + noise * rng.normal(size=labels.shape)
        if head == "bce":
            s = 1 / (1 + np.exp(-2 * s))
        vs = val_labels + noise * rng.normal(size=val_labels.shape)
        imagined = {k: {"scores": imag_labels + noise * rng.normal(size=imag_labels.shape),
                        "labels": imag_labels, "take_id": np.array([f"{k}{i}" for i in range(60)])}
                    for k in ("tune", "compare")}
        hr = R.evaluate_head(
            head, {"scores": s, "labels": labels, "take_id": take_id, "view": view},
            {"scores": vs, "labels": val_labels, "take_id": val_take, "view": np.tile([1, 2], 14)},
            cfg, imagined=imagined, test_ratio=np.r_[np.zeros(18), 5.0, 5.0], ood_slack=1.2)
        out.append(Entry(run, run, head, hr.metrics, s, labels, hr.pred, hr.true,
                         ["features from random init"], unit_scores=hr.unit_scores,
                         unit_probs=hr.unit_probs, verdicts=hr.verdicts, unit_ids=hr.unit_ids,
                         op=hr.op, provenance={"trained": "2026-01-01 10:00", "backbone": "fake",
                                               "init": "random", "seed": 0, "dataset": "synthetic",
                                               "synthetic": True, "code_version": "0+gabc"}))
    return out


def test_report_writes_md_html_and_pngs(tmp_path):
    entries = _entries(np.random.default_rng(0))
    paths = write_report(entries, tmp_path / "rep", command="cprclip eval")
    names = {p.name for p in (tmp_path / "rep").iterdir()}
    best = best_entry(entries)
    assert {"report.md", "report.html", "per_class_ap.png", "pr_curves.png", "map_by_errors.png",
            f"cooccurrence-{best.slug}.png", f"reliability-{best.slug}.png"} <= names
    assert sum(n.startswith("cooccurrence-") for n in names) == 1  # one matrix, not one per model
    assert any(n.startswith("pr_per_class-") for n in names)
    for p in paths.values():
        if p.suffix == ".png":
            assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = (tmp_path / "rep" / "report.html").read_text()
    # self-contained: every PNG embedded, no file reference; readable on a phone
    assert html.count("data:image/png;base64,") == sum(n.endswith(".png") for n in names)
    assert ".png'" not in html
    assert "<meta name='viewport' content='width=device-width, initial-scale=1'>" in html
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "random init" in md and "(per_class_ap.png)" in md
    header, rows = comparison_rows(entries)
    want = f"{100 * entries[0].metrics['test']['video']['map']['value']:.1f}"
    assert rows[0][header.index("mAP")] == want and f"| {want} |" in md


def test_summary_comes_first_and_says_what_the_best_model_finds(tmp_path):
    entries = _entries(np.random.default_rng(1))
    write_report(entries, tmp_path / "rep")
    md = (tmp_path / "rep" / "report.md").read_text()
    heads = re.findall(r"^## (.+)$", md, flags=re.M)
    assert heads[0] == "Summary"
    summary = md.split("## Summary", 1)[1].split("\n## ", 1)[0]
    best = best_entry(entries)
    d = best.metrics["decisions"][best.metrics["decisions"]["unit"]]
    assert f"**{best.label}**" in summary
    assert f"recall {100 * d['recall_micro']:.1f}%" in summary
    assert f"precision {100 * d['precision_micro']:.1f}%" in summary
    assert "It finds well" in summary and "It mostly misses" in summary
    assert "synthetic" in summary
    # the glossary defines both mAPs; the provenance table names commit, date, backbone, init
    assert "- **mAP**:" in md and "- **MMIT mAP**:" in md
    assert "| 2026-01-01 10:00 | 0+gabc | fake | random |" in md
    html = (tmp_path / "rep" / "report.html").read_text()
    assert html.index("<h2>Summary</h2>") < html.index("<h2>Model comparison")


def test_per_class_table_is_the_assistants_operating_point(tmp_path):
    entries = _entries(np.random.default_rng(2))
    best = best_entry(entries)
    header, rows = per_class_rows(best)
    assert header[:6] == ["class", "test takes with it", "reported", "precision", "recall", "F1"]
    pred, true = best.pred.astype(bool), best.true.astype(bool)
    by_name = {r[0]: r for r in rows}
    for c in range(1, NUM_CLASSES):
        if true[:, c].sum() == 0 and pred[:, c].sum() == 0:
            assert CLASSES[c] not in by_name
            continue
        r = by_name[CLASSES[c]]
        tp = (pred[:, c] & true[:, c]).sum()
        assert r[1] == str(true[:, c].sum()) and r[2] == str(pred[:, c].sum())
        want_r = 100 * tp / true[:, c].sum() if true[:, c].sum() else 0.0
        assert r[4] == f"{want_r:.1f}"
    write_report(entries, tmp_path / "rep")
    md = (tmp_path / "rep" / "report.md").read_text()
    assert f"## Per class, at the assistant's operating point: {best.label}" in md
    assert "| " + " | ".join(rows[0]) + " |" in md
    # the unsuitable take of the fixture is counted where the assistant's verdicts are
    dec = best.metrics["decisions"][best.metrics["decisions"]["unit"]]
    assert dec["verdicts"]["unsuitable"] == 1 and best.pred[-1].sum() == 0


def test_zeroshot_runs_sit_beside_the_supervised_models(tmp_path, caplog):
    """Narration runs' zeroshot.json under runs_dir become a table in the report, with the
    supervised models' composite mAP in the same columns; a broken file is named and skipped."""
    import json

    from evaluate.report import read_zeroshot, zeroshot_rows

    runs = tmp_path / "runs"
    (runs / "narration").mkdir(parents=True)
    (runs / "narration" / "zeroshot.json").write_text(json.dumps({
        "modalities": ["flow"], "streams_trained_with_labels": [],
        "val": {"top1": 0.375, "macro_f1": 0.31, "take_top1": 0.5},
        "test": {"mAP": 0.267, "mAP_fused": 0.384}}))
    (runs / "broken").mkdir()
    (runs / "broken" / "zeroshot.json").write_text("{not json")
    with caplog.at_level("WARNING"):
        found = read_zeroshot(runs)
    assert [n for n, _ in found] == ["narration"]
    assert "broken/zeroshot.json" in caplog.text
    entries = _entries(np.random.default_rng(0))
    header, rows = zeroshot_rows(entries, found)
    assert rows[0][:5] == ["narration", "narrations (zero-shot)", "flow", "none", "37.5"]
    assert rows[0][header.index("mAP fused-mean")] == "38.4"
    want = f"{100 * entries[0].metrics['test']['video']['map']['value']:.1f}"
    assert rows[1][header.index("mAP")] == want and rows[1][1] == "class labels"
    write_report(entries, tmp_path / "rep", zeroshot=found)
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "## Zero-shot recognition after narration pretraining" in md
    assert "| narration | narrations (zero-shot) | flow | none | 37.5 |" in md
    write_report(entries, tmp_path / "rep2")
    assert "Zero-shot" not in (tmp_path / "rep2" / "report.md").read_text()
