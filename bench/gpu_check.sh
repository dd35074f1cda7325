#!/usr/bin/env bash
# The GPU checks, as one script for a lent CUDA machine that holds torch but not this project's
# other packages (docs/benchmarks.md, "GPU"). Wheels for the missing ones are carried in .whl/
# (decord, av, mmaction2, mmengine, mmcv-lite and their small pure-Python needs); no ffmpeg
# program is needed (the benches' clips and the tests' videos fall back to PyAV's FFmpeg).
#
#   bash bench/gpu_check.sh OUTDIR [quick]
#
# Writes OUTDIR/env.txt, OUTDIR/gpu_test.txt, OUTDIR/finetune_speed.txt, OUTDIR/benchmarks.md
# (the extraction section) and OUTDIR/extract_bench.log. Each part has its own time limit, so a
# slow part cannot take the rest down with it.
set -u
OUT=${1:?usage: bash bench/gpu_check.sh OUTDIR [quick]}
QUICK=${2:-}
mkdir -p "$OUT"
PY=${PY:-python3}
if [ -d .whl ]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
fi
export PYTHONUNBUFFERED=1 CPRCLIP_NO_PROGRESS=1
{
  date -u
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  lscpu | grep -E "^Model name|^CPU\(s\)"
  echo "ffmpeg program: $(command -v ffmpeg || echo none)"
  $PY -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__, 'cuda', torch.version.cuda, torch.cuda.is_available())"
  $PY -c "import decord, av, mmaction; print('decord', decord.__version__, 'av', av.__version__, 'mmaction2', mmaction.__version__)"
} > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

echo "== CUDA extraction matches CPU (tests marked gpu)"
timeout 150 $PY -m pytest -q -p no:cacheprovider -m gpu -rs tests/extract/test_extract_cli.py \
  > "$OUT/gpu_test.txt" 2>&1
tail -5 "$OUT/gpu_test.txt"

echo "== training step speed (bench/finetune.py speed; images/s)"
: > "$OUT/finetune_speed.txt"
for spec in "tsn_r50 rgb 16" "tsn_r18 rgb 16" "tsn_mnv2 rgb 16" "tsn_mnv2 flow 16"; do
  set -- $spec
  for amp in "" "--amp"; do
    timeout 60 $PY bench/finetune.py speed --backbone "$1" --modality "$2" --batch "$3" \
      --segments 8 --crop 224 --steps 10 --warmup 3 --device cuda $amp >> "$OUT/finetune_speed.txt" 2>&1
  done
done
cat "$OUT/finetune_speed.txt"

echo "== extraction bench on 4K clips (bench/extract.py --device cuda)"
if [ -n "$QUICK" ]; then R=1; V=2; S=2; else R=3; V=4; S=10; fi
cp docs/benchmarks.md "$OUT/benchmarks.md"
timeout 330 $PY bench/extract.py --device cuda --backbone tsn_r50 --batch 4 --workers 8 \
  --threads 8 --repeats $R --videos $V --seconds $S --data /tmp/cprclip-bench \
  --out "$OUT/benchmarks.md" > "$OUT/extract_bench.log" 2>&1
echo "extract bench rc=$?"
tail -30 "$OUT/extract_bench.log"
