#!/usr/bin/env bash
# The prepared GPU session of issue #17, for a machine with one CUDA GPU (sized for the H200 device
# tool's 15 minutes, start included). Run from the repository root:
#   here:   bash benchmarks/gpu/fetch_wheels.sh
#   there:  bash benchmarks/gpu/session.sh        (device tool: carry [".whl"], timeout_s 590)
# Writes into $OUT (default benchmarks/results/gpu): cuda_tests.log, bench_rates.json,
# bench_qml.json, bench_search.json and the noise studies at 16 qubits, noise16-<agent>.json (the
# device tool returns at most 8 files; training runs stay in /tmp there).
# Every step has its own time limit, so one slow step cannot take the others' results with it.
set -uo pipefail
OUT=${OUT:-benchmarks/results/gpu}
mkdir -p "$OUT"
if compgen -G ".whl/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || exit 1
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv
step() { local limit=$1; shift; echo "== $* (limit ${limit}s)"; timeout "$limit" "$@"; echo "== exit $?"; }
step 90 python3 -m pytest -q -m cuda tests/ 2>&1 | tee "$OUT/cuda_tests.log"
step 45 python3 benchmarks/bench_rates.py --device cuda --repeats 3 --out "$OUT/bench_rates.json"
step 60 python3 benchmarks/bench_qml.py --device cuda --qubits 8 16 --out "$OUT/bench_qml.json"
step 120 python3 benchmarks/bench_search.py --device cuda --device-k 12 18 20 --skip-large \
  --out "$OUT/bench_search.json"
for agent in hqcnn hqcnn-ar; do
  step 120 python3 -m agents.lab.noise_study --agent "$agent" --train-root "/tmp/gpu-runs-$agent" --qubits 16 \
    --device cuda --p 0 0.001 0.01 0.1 --snapshots 20 --out "/tmp/noise-$agent" --no-progress
  cp "/tmp/noise-$agent/noise_study.json" "$OUT/noise16-$agent.json" 2>/dev/null   # merge later with --replot
done
