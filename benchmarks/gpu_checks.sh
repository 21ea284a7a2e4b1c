#!/usr/bin/env bash
# The checks and figures that need a CUDA GPU, in one run of a few minutes:
#   1. the tests that only run on a GPU (the batch-size probe) and the precision/compile tests;
#   2. the score change of bf16 and fp16 against fp32 on the reference sets;
#   3. predict's speed with a ViT-B-16 (random weights) in fp32, bf16, fp16 and compiled,
#      next to bare open_clip and HF X-CLIP, each from the same run.
# Usage: bash benchmarks/gpu_checks.sh [OUTPUT_DIR]   (logs in OUTPUT_DIR, default ./gpu-checks)
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-gpu-checks}"
mkdir -p "$out"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
python3 -c "import sys, torch
if not torch.cuda.is_available():
    sys.exit('gpu_checks.sh: no CUDA GPU on this machine')
print('torch', torch.__version__, torch.cuda.get_device_name())" | tee "$out/device.txt" || exit 1

status=0
python3 -m pytest -q -p no:cacheprovider tests/test_batch_size.py tests/test_predict_precision.py \
    tests/test_compile.py tests/test_fusion_agreement.py 2>&1 | tee "$out/tests.txt" || status=1
python3 benchmarks/bench_precision.py 2>&1 | tee "$out/precision.txt" || status=1
python3 benchmarks/bench_predict.py --model ViT-B-16 --device cuda --repeats 5 --videos 16 --batch-size 32 \
    --compile 2>&1 | tee -a "$out/predict.txt" || status=1
exit $status
