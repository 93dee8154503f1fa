#!/usr/bin/env bash
# CUDA runs behind BENCHMARKS.md's GPU figures (a GPU machine with this repo and PyTorch). Steps are chosen by
# name; each has its own time limit and log, and a failing step does not stop the next:
#   joint   benchmarks/bench_joint.py at the full quickstart budget (the trainer in its `auto` modes, 3 runs);
#   smoke   train.py on the seg quickstart for 100 iterations (the command-line path, `auto` modes);
#   fusion  benchmarks/bench_fusion.py (RGB-D fusion against RGB alone, same architecture and budget);
#   models  benchmarks/bench_models.py --device cuda (fastest correct precision / memory format);
#   ddp     benchmarks/bench_ddp.py --device cuda (per architecture at 512×1024: images/s, memory, MFU, auto vs fp32);
#   saliency benchmarks/bench_saliency.py --device cuda (batched maps against one backward per pixel, 256×832).
#     OUT=runs/cuda bash benchmarks/cuda_checks.sh joint smoke
set -u
OUT=${OUT:-runs/cuda}
PY=${PYTHON:-python3}
WORKERS=${WORKERS:-6}
export PYTHONUNBUFFERED=1 PYTHONWARNINGS=ignore
mkdir -p "$OUT"
{ nvidia-smi -L; "$PY" -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision',
  torchvision.__version__, torch.cuda.get_device_name())"; echo "cpus $(nproc)"; } > "$OUT/env.txt" 2>&1

step() {  # step NAME LIMIT_S COMMAND...
  local name=$1 limit=$2
  shift 2
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
  echo "exit $?" >> "$OUT/$name.log"
}

for name in "$@"; do
  case $name in
    joint) step joint "${JOINT_LIMIT:-330}" "$PY" benchmarks/bench_joint.py --out /tmp/cuda_joint \
             --opts "training.n_workers=$WORKERS" ;;
    smoke) step smoke "${SMOKE_LIMIT:-60}" "$PY" train.py --config configs/synthetic/quickstart_seg.yaml --opts \
             training.train_iters=100 training.val_interval=100 "training.n_workers=$WORKERS" \
             training.out_dir=/tmp/cuda_smoke ;;
    fusion) step fusion "${FUSION_LIMIT:-300}" "$PY" benchmarks/bench_fusion.py --out /tmp/cuda_fusion \
             --opts "training.n_workers=$WORKERS" ;;
    models) step models "${MODELS_LIMIT:-120}" "$PY" benchmarks/bench_models.py --device cuda --size 256x512 \
             --batch 8 --iters 10 --warmup 3 --markdown --json "$OUT/bench_models_cuda.json" ;;
    ddp) step ddp "${DDP_LIMIT:-240}" "$PY" benchmarks/bench_ddp.py --device cuda --markdown \
             --json "$OUT/bench_ddp_cuda.json" ;;
    saliency) step saliency "${SALIENCY_LIMIT:-120}" "$PY" benchmarks/bench_saliency.py --device cuda --arch deeplab \
             --model-opts backbone=resnet18 --size 256 832 --targets 64 --chunk 16 ;;
    *) echo "unknown step $name (joint, smoke, fusion, models, ddp, saliency)" >&2; exit 2 ;;
  esac
done
