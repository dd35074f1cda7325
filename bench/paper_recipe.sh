#!/bin/bash
# Issue 18 (docs/results.md): CPR-CLIP's recipe and ours, all four models, on the demo's features
# and on the authors'-format files exported from them. Run from the repository root after
# `cprclip extract --config configs/synthetic.toml backbone=tsn_mnv2` (FEATURES: where it wrote).
# Writes everything under OUT; the feature store is only read.
set -ex
export CPRCLIP_NO_PROGRESS=1
C=".venv/bin/cprclip"
F=${FEATURES:-features}       # the demo's features (tsn_mnv2, rgb + flow, 8 segments)
O=${OUT:-/tmp/issue18}
TXT="text_encoder=sentence_transformers text_model= text_pretrained= prompt_combine=mean text_cache_dir=$O/tc num_threads=1"
# 1. ours, demo store
time $C train --config configs/synthetic.toml backbone=tsn_mnv2 features_dir=$F runs_dir=$O/runs_ours text_cache_dir=$O/tc num_threads=1
$C eval --config configs/synthetic.toml runs_dir=$O/runs_ours report_dir=$O/report_ours
# 2. paper, demo store
time $C train --config configs/cpr_clip_paper.toml dataset=synthetic backbone=tsn_mnv2 segments=8 modalities=rgb,flow features_dir=$F runs_dir=$O/runs_paper $TXT
$C eval --config configs/cpr_clip_paper.toml runs_dir=$O/runs_paper report_dir=$O/report_paper
# 3. the authors' format: export (train singles only, so training sees the same clips), import each stream
$C export-features --config configs/synthetic.toml backbone=tsn_mnv2 features_dir=$F single_splits=train out_dir=$O/pkl
for m in rgb flow; do
  $C import-features --config configs/cpr_clip_paper.toml single=$O/pkl/$m/TSN_Single_Feat.pkl composite=$O/pkl/$m/TSN_Composite_Feat.pkl dataset=synthetic_authors backbone=tsn_mnv2 modalities=$m val_fraction=0 features_dir=$O/features overwrite=true
done
time $C train --config configs/synthetic.toml dataset=synthetic_authors backbone=tsn_mnv2 segments=1 features_dir=$O/features runs_dir=$O/runs_ours_pkl text_cache_dir=$O/tc num_threads=1
$C eval --config configs/synthetic.toml runs_dir=$O/runs_ours_pkl report_dir=$O/report_ours_pkl
time $C train --config configs/cpr_clip_paper.toml dataset=synthetic_authors backbone=tsn_mnv2 segments=1 modalities=rgb,flow features_dir=$O/features runs_dir=$O/runs_paper_pkl $TXT
$C eval --config configs/cpr_clip_paper.toml runs_dir=$O/runs_paper_pkl report_dir=$O/report_paper_pkl
