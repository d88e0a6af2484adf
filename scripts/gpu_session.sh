#!/usr/bin/env bash
# One sitting on a lent GPU machine (issue 22), from the repository root, with yolov5/ (make apply), weights/
# (make weights) and datasets/BCCD (make data) built beforehand: the machine has no internet and no git here.
#
#   OUT=folder PROJECT_COMMIT=<sha> bash scripts/gpu_session.sh bench   # EMA's CUDA check, model tables: float32,
#                                                                        # AMP, EMA via autograd
#   OUT=folder PROJECT_COMMIT=<sha> bash scripts/gpu_session.sh train 1/10 [SECONDS]
#       # one shard of configs/ablations/bccd-finetune-gpu.yaml, interrupted (resumable) after SECONDS (default
#       # 420); DETERMINISM=1 runs every shipped YAML's determinism check beside it (it slows the shard)
#
# Everything it makes lands in $OUT, packed in few files (a device machine returns at most 8).
set -u
PY=${PY:-python3}
OUT=${OUT:-runs/gpu-session}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
say() { echo "== $(date -u +%H:%M:%S) $*"; }

say "machine"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm --format=csv 2>&1 | tail -2
$PY -c 'import torch; print("torch", torch.__version__, torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA")'

case "${1:-}" in
bench)
  say "EMA compiled against its float64 reference"; timeout 120 $PY scripts/check_ema_cuda.py 2>&1 | tee "$OUT/ema-cuda-check.md" | tail -9
  # timed alone: nothing else may run on the GPU meanwhile
  BENCH=(scripts/bench.py models --device "${DEVICE:-0}" --img "${IMG:-640}" --batch "${BATCH:-16}" --rounds 3 --repeats 3)
  say "bench float32"; timeout 130 $PY "${BENCH[@]}" 2>&1 | tee "$OUT/bench-fp32.md" | grep -v '^\s*$' | tail -20
  say "bench AMP"; timeout 130 $PY "${BENCH[@]}" --amp 2>&1 | tee "$OUT/bench-amp.md" | grep -v '^\s*$' | tail -20
  EMA_MODELS=(--models yolov5s yolov5s_EMA yolov5s_C3EMA yolov5s_BiFPN_EMA)
  say "bench EMA through autograd"
  { timeout 45 $PY "${BENCH[@]}" "${EMA_MODELS[@]}" --ema-autograd 2>&1
    timeout 45 $PY "${BENCH[@]}" "${EMA_MODELS[@]}" --ema-autograd --amp 2>&1; } | tee "$OUT/bench-ema-autograd.md" | tail -14
  ;;
train)
  SHARD=${2:-1/10}
  SECONDS_LEFT=${3:-420}
  if [ "${DETERMINISM:-0}" = 1 ]; then
    say "determinism check of every shipped YAML (beside the shard)"
    timeout "$SECONDS_LEFT" $PY scripts/check_determinism.py --device "${DEVICE:-0}" --jobs "${DET_JOBS:-3}" \
      --project runs/determinism --out "$OUT/cuda-determinism.md" ${DET_ARGS:-} > "$OUT/determinism.log" 2>&1 &
  fi
  say "ablation shard $SHARD"
  timeout -s INT -k 60 "$SECONDS_LEFT" $PY scripts/ablate.py run "${ABLATION:-configs/ablations/bccd-finetune-gpu.yaml}" \
    --shard "$SHARD" > "$OUT/ablation.log" 2>&1
  say "ablation exit $?"; tail -15 "$OUT/ablation.log"
  wait
  [ "${DETERMINISM:-0}" = 1 ] && { say "determinism"; tail -25 "$OUT/cuda-determinism.md" 2>/dev/null || tail -20 "$OUT/determinism.log"; }
  name=$(basename "${ABLATION:-bccd-finetune-gpu}" .yaml)
  # records, each run's train.log and results.csv, the determinism runs' logs
  tar czf "$OUT/runs.tgz" runs/ablate/"$name"/records \
    $(ls runs/ablate/"$name"/runs/*/train.log runs/ablate/"$name"/runs/*/train/results.csv 2>/dev/null) \
    $(ls runs/determinism/*/*.log 2>/dev/null) 2>/dev/null
  ls -la "$OUT"
  ;;
*)
  echo "usage: $0 bench | train SHARD [SECONDS]" >&2; exit 2 ;;
esac
