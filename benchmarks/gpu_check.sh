#!/usr/bin/env bash
# The GPU half of the training checks, as one script for a lent GPU machine (its python3 has CUDA torch but
# none of: deepspeed, jsonschema, pydantic; nothing can be downloaded there).
#   here, once:      bash benchmarks/gpu_check.sh --prepare   # those wheels -> .gpu-wheels/ (git-ignored)
#   on the GPU:      bash benchmarks/gpu_check.sh             # carry .gpu-wheels; figures also go to $OUT
# Prints: GPU and versions; jets/s, peak memory and MFU per model and width with the torch engine and with
# DeepSpeed (ZeRO 2) and with torch.compile; DeepSpeed-vs-torch weight/loss differences per ZeRO stage; the data
# path alone (jets/s of batches assembled on the device, no model); ParT compiled with static length buckets.
# ONLY="torch data parity part_buckets deepspeed compiled" runs those steps alone (a lease's command limit).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ "${1:-}" = --prepare ]; then
  mkdir -p .gpu-wheels
  pip=(.venv/bin/pip -q --disable-pip-version-check)
  "${pip[@]}" download --only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux2014_x86_64 \
    --platform manylinux_2_17_x86_64 --no-deps -d .gpu-wheels jsonschema==4.26.0 jsonschema-specifications \
    referencing rpds-py pydantic==2.14.4 pydantic-core==2.50.5 annotated-types typing-inspection hjson
  "${pip[@]}" wheel --no-deps deepspeed==0.19.8 -w .gpu-wheels
  ls .gpu-wheels
  exit 0
fi
OUT=${OUT:-/tmp/gpu_check}
STEP_TIMEOUT=${STEP_TIMEOUT:-240}  # seconds per step; steps that do not fit one command of the lease: ONLY=
DEVICE=${DEVICE:-cuda}  # DEVICE=cpu PYTHON=.venv/bin/python: a dry run of this script on a machine without a GPU
ONLY=${ONLY:-torch data parity part_buckets deepspeed compiled}
want() { [[ " $ONLY " == *" $1 "* ]]; }
mkdir -p "$OUT"
if ! "$PY" -c "import deepspeed, jsonschema" 2>/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps .gpu-wheels/*.whl
fi
export PYTHONPATH=$PWD/src
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
  "$PY" -c "import torch, deepspeed; print('torch', torch.__version__, 'deepspeed', deepspeed.__version__)"; } | tee "$OUT/env.txt"
widths="particlenet=64,128;part=128,256;bbt_neutron=512,768"
some="particlenet=64;part=128;bbt_neutron=512,768"
part="part=128"
data_jets=50000  # prepared ParticleNet/ParT inputs of 128 slots: 0.7 GB, kept on the device
if [ "$DEVICE" = cpu ]; then widths="particlenet=16;part=16;bbt_neutron=32"; some=$widths; part="part=16"; data_jets=2000; fi
set +e  # from here on a step that fails or runs out of time does not cost the others their figures
tp=(timeout "$STEP_TIMEOUT" "$PY" benchmarks/train_throughput.py --synthetic --device "$DEVICE" --batch-size "${BATCH:-256}" --steps "${STEPS:-20}")
want torch && "${tp[@]}" --widths "$widths" | tee "$OUT/throughput_torch.txt"
# batches assembled on the device, no model: to set beside the training rates above (synthetic splits: no generator)
want data && timeout "$STEP_TIMEOUT" "$PY" benchmarks/data_path.py --pools "" --synthetic "${DATA_JETS:-$data_jets}" \
  --device "$DEVICE" --batch-size 512 --batches "${DATA_BATCHES:-200}" | tee "$OUT/data_path.txt"
want parity && timeout "$STEP_TIMEOUT" "$PY" benchmarks/engine_parity.py --device "$DEVICE" --width "${PARITY_WIDTH:-256}" --steps 30 --batch-size 64 \
  | tee "$OUT/parity.txt"
# static shapes: each bucket is compiled once (ParT fails to compile with dynamic shapes)
want part_buckets && timeout "$STEP_TIMEOUT" "$PY" benchmarks/train_throughput.py --device "$DEVICE" --synthetic --widths "$part" \
  --batch-size "${PART_BATCH:-512}" --steps "${STEPS:-20}" --buckets 32,64,96,128 --compile | tee "$OUT/throughput_part_buckets.txt"
want deepspeed && "${tp[@]}" --engine deepspeed --zero-stage 2 --widths "$some" | tee "$OUT/throughput_deepspeed.txt"
want compiled && "${tp[@]}" --compile --widths "$some" | tee "$OUT/throughput_compiled.txt"
