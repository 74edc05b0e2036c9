#!/usr/bin/env bash
# The GPU benchmark's whole plan for one GPU machine, as one command. The machine is held 15 minutes in
# all, start-up included, and runs one command for at most 10. It installs the carried wheels, then runs the rows most
# important first, starting none that would end more than DEADLINE seconds after the script began: each
# gpu_i2v.py process gets what is left as --budget-s, and a row that would not fit is recorded as skipped.
#   here, once:  bash bench/gpu_wheels.sh
#   there:       bash bench/gpu_plan.sh  (with .whl/ copied beside the tree; at most 600 s)
# Results: $OUT/{svd,ltx,wan,cache}.json, one plan.log, and clips.tar (each optimised row's last clip, for
# `bench/clip_check.py --clips clips.tar` here: the identity model does not fit in the carry beside the
# wheels). Six files; the tool brings back eight at most. Every row is in its .json as soon as it
# finishes; the tables of all four are printed last, for the reply's output tail.
# Estimates per row and the targets each answers: bench/RESULTS.md.
set -uo pipefail
cd "$(dirname "$0")/.."
DEADLINE=${DEADLINE:-570}  # with timeout_s 600: 30 s for a row that runs past its estimate
OUT=${OUT:-/tmp/gpu_plan}
PY=${PY:-python3}
mkdir -p "$OUT"

if [[ ${SKIP_INSTALL:-0} != 1 ]]; then
    if ! compgen -G ".whl/*.whl" >/dev/null; then
        echo "no wheels in .whl/: run bench/gpu_wheels.sh here and carry .whl" >&2
        exit 2
    fi
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        .whl/*.whl || exit 2
    export PYTHONPATH=/tmp/site:$PWD
fi
export PYTHONUNBUFFERED=1
echo "ready after ${SECONDS} s"

# run NAME ARGS...: one gpu_i2v.py process into $OUT/NAME.json and plan.log, inside what is left;
# the rows measured by earlier processes correct its estimates.
run() {
    local name=$1 left=$((DEADLINE - SECONDS))
    shift
    if ((left < 45)); then  # starting Python, torch and CUDA and measuring the matmul peak take ~15 s
        echo "[$name] not started: ${left} s of the plan left" | tee -a "$OUT/plan.log"
        return
    fi
    local earlier=("$OUT"/*.json)
    "$PY" bench/gpu_i2v.py "$@" --budget-s "$left" --json "$OUT/$name.json" --save-clips /tmp/clips \
        --calibrate "${earlier[@]}" 2>&1 | tee -a "$OUT/plan.log"
}

# (a) SVD-XT at its production shape. optimised first: alone it answers the 10 s, MFU and memory targets;
# the stock rows give the 2× and 3× ratios; then what the guidance interval and fp8 matmuls add.
run svd --family svd-xt --frames 25 --size 1024x576 --steps 25 \
    --variants optimised,stock-bf16,stock-fp32,optimised+interval,optimised+fp8
# (b) the transformer families at their default shapes, optimised. LTX first: under half of Wan's cost.
# Wan 2.1 runs 5 of its 40 steps (a 40-step clip is ~135 PFLOP, minutes on one GPU): the per-step time
# and MFU are what it measures, and a full clip extrapolates from them.
run ltx --family ltx --variants optimised
run wan --family wan2.1 --steps 5 --variants optimised
# (c) the first-block step cache, if time is left (its hit rate on random weights says little)
run cache --family ltx --variants optimised+cache

tar -cf "$OUT/clips.tar" -C /tmp clips 2>/dev/null
"$PY" bench/gpu_i2v.py --report "$OUT"/svd.json "$OUT"/ltx.json "$OUT"/wan.json "$OUT"/cache.json 2>/dev/null
echo "plan finished after ${SECONDS} s"
