#!/usr/bin/env bash
# One GPU lease, the issue-17 figures, most important first: run from the repository root on the device machine.
# How to run it with the device tool: docs/development/gpu-session.md.
#
#   bash benchmarks/gpu_session.sh                       # H200: about 9 minutes
#   STEPS="e2e448 cold" bash benchmarks/gpu_session.sh   # only some steps
#   SCALE=tiny bash benchmarks/gpu_session.sh            # every step at tiny scale on CPU, to check it first
#
# Steps (random Qwen2.5-VL-7B in bf16, JPEG files in; estimates for an H200):
#   e2e448    end to end vs forward-only at 448 px, batch 16, over 1024 images; the loader alone too (~2 min)
#   e2e1024   the same at 1024x768 (the processor's default resolution), 384 images (~2 min)
#   drift     default-mode MOS drift across batch sizes 1/8/16 and between --tasks all and mos; the same in fixed
#             shapes (--reproducible): its drift and its speed against the default (~1.5 min)
#   cold      a fresh process to the first comparison on a saved random 7B (16.6 GB of bf16 safetensors in the
#             page cache), by phase, for transformers' loading variants; then the whole `vcritic compare a b` (~2 min)
#   input     the input pipeline alone with pinning, 4/8/15 workers, 512 images per size (~1 min)
#   families  Qwen3.5 0.8B/4B and Qwen3-VL-8B end to end at 448 px (throughput.py --arch qwen3.5-0.8b, qwen3.5-4b,
#             qwen3-vl-8b; one that fails, or that this transformers cannot build, is recorded as skipped)
# Each step appends JSON lines to its own file in $OUT as it measures (a run cut off keeps what it measured),
# everything printed goes to $OUT/session.log, and $OUT/steps.jsonl gets the versions and each step's exit status
# and seconds: 8 files, the most a device run sends back.
set -u
OUT="${OUT:-/tmp/vcritic-gpu}"
SCALE="${SCALE:-full}"
STEPS="${STEPS:-e2e448 e2e1024 drift cold input families}"
mkdir -p "$OUT"
LOG="$OUT/session.log"
export PYTHONUNBUFFERED=1
if compgen -G ".whl/*.whl" > /dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        || exit 1
    export PYTHONPATH="/tmp/site:${PYTHONPATH:-}"
fi
export PYTHONPATH="$PWD:${PYTHONPATH:-}"
PY="${PYTHON:-python3}"
if [ "$SCALE" = tiny ]; then device=cpu; else device=cuda; fi

"$PY" - <<'EOF' 2>&1 | tee -a "$OUT/steps.jsonl" "$LOG"
import json, os, platform
import torch, transformers
name = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
print(json.dumps({"step": "env", "device": name, "torch": torch.__version__, "transformers": transformers.__version__,
                  "python": platform.python_version(), "cpus": os.cpu_count(), "scale": os.environ.get("SCALE", "full")}))
EOF

step() {  # step NAME COMMAND...: runs it, logs it, records its exit status and seconds
    local name=$1 started=$SECONDS status
    shift
    case " $STEPS " in *" $name "*) ;; *) return 0 ;; esac
    echo "== $name: $*" | tee -a "$LOG"
    "$@" 2>&1 | tee -a "$LOG"
    status=${PIPESTATUS[0]}
    echo "{\"step\": \"$name\", \"exit\": $status, \"s\": $((SECONDS - started))}" | tee -a "$OUT/steps.jsonl" "$LOG"
}

arch=(--arch qwen2.5-vl-7b --scale "$SCALE" --vision-attention grouped --pipeline overlap)
if [ "$SCALE" = tiny ]; then
    n448=(--images 16 --batch-sizes 4); n1024=(--images 8 --batch-sizes 4); ndrift=(--images 8 --batch-sizes 1 4)
    cold=(--size tiny --device cpu --variants default threads=8 no-mmap)
    input=(--device cpu --images 16 --workers 0 1 --batch-size 4); nfam=(--images 8 --batch-sizes 4)
else
    n448=(--images 1024 --batch-sizes 16); n1024=(--images 384 --batch-sizes 16)
    ndrift=(--images 96 --batch-sizes 1 8 16)
    cold=(--size 7b --device cuda --variants default threads=8 threads=16 no-mmap --folder /tmp/vcritic-cold)
    input=(--device cuda --images 512 --workers 4 8 15 --batch-size 16); nfam=(--images 512 --batch-sizes 14 16)
fi

step e2e448 "$PY" benchmarks/throughput.py "${arch[@]}" --sizes 448x448 "${n448[@]}" --out "$OUT/e2e_448.jsonl"
step e2e1024 "$PY" benchmarks/throughput.py "${arch[@]}" --sizes 1024x768 "${n1024[@]}" --out "$OUT/e2e_1024.jsonl"
step drift "$PY" benchmarks/throughput.py "${arch[@]}" --sizes 448x448 "${ndrift[@]}" --fixed-shapes both \
    --tasks-drift --out "$OUT/drift.jsonl"
step cold "$PY" benchmarks/cold_start.py "${cold[@]}" --out "$OUT/cold_start.jsonl"
step input "$PY" benchmarks/input_pipeline.py "${input[@]}" --out "$OUT/input_pipeline.jsonl"

families() {  # the new judges, each only where throughput.py has its dimensions and this transformers its classes
    local name
    : > "$OUT/new_families.jsonl"
    for name in qwen3.5-0.8b qwen3.5-4b qwen3-vl-8b; do
        if ! "$PY" -c "import sys; sys.path.insert(0, 'benchmarks'); from throughput import ARCHES
from vcritic.testing import FAMILIES; assert ARCHES['$name']['family'] in FAMILIES" 2>/dev/null; then
            echo "{\"arch\": \"$name\", \"skipped\": \"not in benchmarks/throughput.py ARCHES or vcritic.testing\"}" \
                | tee -a "$OUT/new_families.jsonl"
            continue
        fi
        "$PY" benchmarks/throughput.py --arch "$name" --scale "$SCALE" --sizes 448x448 "${nfam[@]}" \
            --out "$OUT/new_families.jsonl" \
            || echo "{\"arch\": \"$name\", \"skipped\": \"failed, see session.log\"}" | tee -a "$OUT/new_families.jsonl"
    done
}
step families families
echo "figures in $OUT: $(ls "$OUT" | tr '\n' ' ')" | tee -a "$LOG"
