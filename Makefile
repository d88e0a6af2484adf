# YOLOv5 v7.0 + improvements from the "YOLOv5 改进" posts. `make help` lists the targets.
# Every target runs from the project root; paths given in variables are relative to it.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV    ?= .venv
PY      := $(VENV)/bin/python
TREE    ?= yolov5
SOURCE  ?= auto# where v7.0 comes from: auto | git | pypi (scripts/apply.py --source)

# train.py / val.py / detect.py options. CPU defaults: yolov5n at 320 px on BCCD (~14 min on 2 cores: docs/results/make-train-default.md).
CFG     ?= yolov5n.yaml
HYP     ?= hyp.scratch-low.yaml# base files, layered (from scratch: hyp.scratch-low.yaml,configs/hyps/scratch-short.yaml)
VARIANT ?=# hyp variant on HYP: a name in configs/hyps/ (eiou, varifocal, ema-off, ...) or a file
DATA    ?= configs/data/bccd.yaml
EPOCHS  ?= 40
IMG     ?= 320
BATCH   ?= 16
DEVICE  ?=# empty: first GPU if there is one, else CPU; "0,1" trains with DDP on two GPUs; "cpu"
WEIGHTS ?= yolov5n.pt# upstream's COCO-pretrained weights (weights/, filled from ../shared by make weights); empty: from scratch
NAME    ?= exp
RUNS    ?= runs
BEST    ?= $(RUNS)/train/$(NAME)/weights/best.pt
SOURCE_IMAGES ?= datasets/BCCD/images/test
ARGS    ?=# anything else for train.py, e.g. ARGS="--cos-lr --patience 10"
ABL     ?= configs/ablations/smoke.yaml
SRC     ?=# make data: a dataset to convert (Pascal VOC, COCO JSON or YOLO folder, or a COCO .json); empty: BCCD
DATASET_ARGS ?=# more scripts/make_dataset.py options for make data SRC=..., e.g. "--names cat,dog --skip-bad"
BENCH   ?=# scripts/bench.py arguments, e.g. BENCH="models --img 320 640" or BENCH="losses --amp"

comma := ,
NGPU := $(words $(subst $(comma), ,$(DEVICE)))
HYPS := $(HYP)$(if $(VARIANT),$(comma)$(if $(findstring /,$(VARIANT)),$(VARIANT),configs/hyps/$(VARIANT).yaml))
# Several GPUs: one process per GPU through PyTorch's launcher, as YOLOv5 documents for DDP.
ifeq ($(shell [ $(NGPU) -gt 1 ] && echo ddp),ddp)
TRAIN_LAUNCH := $(PY) -m torch.distributed.run --nproc_per_node $(NGPU)
else
TRAIN_LAUNCH := $(PY)
endif

SHARED_WEIGHTS ?= ../shared/weights
STAMP_VENV := $(VENV)/.installed
STAMP_DATA := datasets/BCCD/.converted
# train/val/detect convert BCCD first only when they use it (DATA, SOURCE_IMAGES at their defaults)
DATA_DEPS := $(if $(filter configs/data/bccd.yaml,$(DATA)),$(STAMP_DATA))
DETECT_DEPS := $(if $(filter datasets/BCCD/%,$(SOURCE_IMAGES)),$(STAMP_DATA))
# a released weights name (yolov5n.pt) that ../shared holds: copy it into weights/ first (train.py finds it there)
WEIGHTS_DEPS := $(if $(WEIGHTS),$(if $(findstring /,$(WEIGHTS)),,$(if $(wildcard $(SHARED_WEIGHTS)/$(WEIGHTS)),weights/$(WEIGHTS))))

# the optional Ray extra (ablate.py --executor ray), installed into the same venv
STAMP_RAY := $(VENV)/.installed-ray

.PHONY: help setup setup-ray apply check data weights train val detect export diff test test-all bench ablate report clean distclean

help:  ## list targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | expand -t 12

setup: $(STAMP_VENV)  ## virtual environment from requirements.txt
$(STAMP_VENV): requirements.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	touch $@

setup-ray: $(STAMP_RAY)  ## optional: Ray for `ablate.py run --executor ray` (requirements-ray.txt)
$(STAMP_RAY): requirements-ray.txt $(STAMP_VENV)
	$(PY) -m pip install -q -r requirements-ray.txt
	touch $@

apply: $(STAMP_VENV)  ## build yolov5/: pinned v7.0 + overlay + patches (idempotent)
	$(PY) scripts/apply.py --source $(SOURCE) --dest $(TREE)

check: $(STAMP_VENV)  ## do all patches apply? changes nothing
	$(PY) scripts/apply.py --source $(SOURCE) --check

# make data SRC=...: the dataset is named NAME when NAME is on the command line, else after SRC's folder or file
# (make_dataset.py's default; NAME's own default, exp, is the run name).
DATASET_NAME := $(if $(filter command line,$(origin NAME)), --name '$(NAME)')
ifeq ($(SRC),)
data: $(STAMP_DATA)  ## BCCD; or SRC=dir|file [NAME=n]: VOC/COCO/YOLO -> datasets/NAME, configs/data/NAME.yaml
else
data: | $(STAMP_VENV)
	$(PY) scripts/make_dataset.py --src '$(SRC)'$(DATASET_NAME) $(DATASET_ARGS)
endif
$(STAMP_DATA): scripts/make_dataset.py $(wildcard scripts/dataset_formats/*.py) configs/data/bccd.yaml | $(STAMP_VENV)
	$(PY) scripts/make_dataset.py --name BCCD --data configs/data/bccd.yaml --yaml configs/data/bccd.yaml
	touch $@

weights: $(STAMP_VENV)  ## copy upstream's released weights from ../shared/weights into weights/ (sha256-checked)
	$(PY) scripts/copy_weights.py $(wildcard $(SHARED_WEIGHTS)/*.pt) --to weights
weights/%.pt: $(SHARED_WEIGHTS)/%.pt | $(STAMP_VENV)
	$(PY) scripts/copy_weights.py $< --to weights

train: apply $(DATA_DEPS) $(WEIGHTS_DEPS)  ## train.py with CFG HYP VARIANT DATA EPOCHS IMG BATCH DEVICE WEIGHTS NAME
	$(TRAIN_LAUNCH) $(TREE)/train.py --cfg $(CFG) --hyp $(HYPS) --data $(DATA) --epochs $(EPOCHS) --img $(IMG) \
		--batch $(BATCH) --weights '$(WEIGHTS)' --device '$(DEVICE)' --project $(RUNS)/train --name $(NAME) \
		--exist-ok $(ARGS)

val: apply $(DATA_DEPS)  ## val.py on BEST (default: runs/train/NAME/weights/best.pt), test split
	$(PY) $(TREE)/val.py --weights $(BEST) --data $(DATA) --img $(IMG) --task test --device '$(DEVICE)' \
		--project $(RUNS)/val --name $(NAME) --exist-ok

detect: apply $(DETECT_DEPS)  ## detect.py with BEST on SOURCE_IMAGES
	$(PY) $(TREE)/detect.py --weights $(BEST) --source $(SOURCE_IMAGES) --img $(IMG) --device '$(DEVICE)' \
		--project $(RUNS)/detect --name $(NAME) --exist-ok

export: apply  ## export.py BEST to ONNX
	$(PY) $(TREE)/export.py --weights $(BEST) --img $(IMG) --include onnx --device '$(if $(DEVICE),$(DEVICE),cpu)'

diff: apply  ## what this project changed against upstream v7.0
	@git -C $(TREE) log --oneline upstream..HEAD
	@git -C $(TREE) diff --stat upstream
	@echo "full diff: git -C $(TREE) diff upstream"

test: $(STAMP_VENV)  ## the test suite (fast tests and the end-to-end runs; no GPU, no network)
	$(PY) -m pytest -q tests -m "not slow" --durations=15

test-all: $(STAMP_VENV)  ## every test, the slow ones too
	$(PY) -m pytest -q tests

bench: apply  ## model and loss speed tables on DEVICE (prints; not a test)
	$(PY) scripts/bench.py --device "$(DEVICE)" $(BENCH)

ablate: apply  ## run the ablation ABL (resumable), then write its report
	$(PY) scripts/ablate.py run $(ABL)

report: $(STAMP_VENV)  ## rebuild the report of ABL from finished runs
	$(PY) scripts/ablate.py report $(ABL)

clean:  ## remove the built tree and caches (keeps venv, datasets and runs)
	rm -rf $(TREE) .pytest_cache
	find . -name __pycache__ -type d -prune -not -path './$(VENV)/*' -exec rm -rf {} +

distclean: clean  ## also remove venv, datasets and runs
	rm -rf $(VENV) datasets $(RUNS)
