#!/usr/bin/env bash
# The checks that need the device machine (one GPU, 16 cores), in the order the brief asks for,
# as one command that fits one `run` of at most 10 minutes. Each step writes its output to
# $OUT/<step>.txt (what comes back), and a failing step does not stop the next.
#
#   1. the GPU input path: benchmarks/input_pipeline.py --gpu (nvJPEG decode, resnet50 bf16 step,
#      the step fed by the real pipeline)
#   2. the trainer at the paper's dimensions on the GPU: benchmarks/train_variants.py --speed
#      (D = 2048, 6,012 classes) and --gpu-scale (1M images resident on the GPU)
#   3. the download scaling of issue 15: benchmarks/download_processes.py --pin 1,4,8,16 (real
#      decoding, the server on the cores left over) and the scale model at 1 and 16 processes
#
# The device image has torch, torchvision, aiohttp, pillow, pyarrow, typer and rich but not
# polars, which travels as a wheel (here, before the run; see /work/.library/device/README.md):
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#       --implementation cp --platform manylinux_2_17_x86_64 -d .whl polars==<the venv's version>
# then: run(command="bash benchmarks/device_check.sh", carry=[".whl"], timeout_s=600).
# img2dataset is not there and cannot be fetched: the comparison with it stays on this machine.
# SMALL=1 shrinks every step (a dry run on a CPU machine: the GPU steps then say they need CUDA).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-/tmp/device-check}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$PWD"
PY="${PY:-python3}"
if ls .whl/*.whl >/dev/null 2>&1; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site \
        .whl/*.whl && export PYTHONPATH="/tmp/site:$PYTHONPATH"
fi
small="${SMALL:-0}"
step() {  # name, timeout in seconds, command...
    local name=$1 limit=$2
    shift 2
    echo "== $name ($(date -u +%H:%M:%S), at most ${limit}s): $*" | tee "$OUT/$name.txt"
    timeout "$limit" "$@" >>"$OUT/$name.txt" 2>&1
    echo "== $name: exit $?" | tee -a "$OUT/$name.txt"
    tail -n 12 "$OUT/$name.txt"
}
{ nproc; "$PY" -c "import torch; print(torch.__version__, torch.cuda.is_available())"; } \
    >"$OUT/machine.txt" 2>&1
nvidia-smi --query-gpu=name,memory.total --format=csv >>"$OUT/machine.txt" 2>&1

if [ "$small" = 1 ]; then
    step input_pipeline 120 "$PY" benchmarks/input_pipeline.py --gpu --images 256 --batch 32
    step train_speed 120 "$PY" benchmarks/train_variants.py --seeds 0 --speed --device cuda
    step download_scaling 300 "$PY" benchmarks/download_processes.py --images 200 \
        --processes 1,2 --real-processes auto --pin 1,2
else
    step input_pipeline 150 "$PY" benchmarks/input_pipeline.py --gpu --workers 12 --batch 256 \
        --images 8192
    step train_speed 150 "$PY" benchmarks/train_variants.py --seeds 0 --speed --gpu-scale \
        --device cuda
    step download_scaling 270 "$PY" benchmarks/download_processes.py --images 6000 \
        --processes 1,16 --real-processes auto --pin 1,4,8,16
fi
