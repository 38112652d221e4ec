#!/usr/bin/env bash
# The worked example of docs/theory-in-practice.md: the plan recommended by `plan recommend`
# (the paper's stagewise rule) against the α-only `step` plan and cosine annealing, on the cnn
# and Fashion-MNIST, same epochs and weight decay, several seeds; then a table of mean ± std.
#
#   BIN=target/release/stagewise OUT=runs/worked-example bash tools/worked_example.sh
#
# Environment: SUBSET (training examples, default 20000), EPOCHS (6), SEEDS ("0 1 2"),
# JOBS (runs at once, default 2; each run gets RAYON_NUM_THREADS=1), SPECTRUM (a spectrum
# JSON for the explanation, optional).
set -euo pipefail
BIN=${BIN:-target/release/stagewise}
OUT=${OUT:-runs/worked-example}
SUBSET=${SUBSET:-20000}
EPOCHS=${EPOCHS:-6}
SEEDS=${SEEDS:-"0 1 2"}
JOBS=${JOBS:-2}
mkdir -p "$OUT"
common=(--lr 0.5 --batch 256 --epochs "$EPOCHS" --stages 3 --drop 2)
"$BIN" plan recommend --from qhm --beta 0.9 --nu 0.7 "${common[@]}" --n-train "$SUBSET" \
  --out "$OUT/recommended.toml" ${SPECTRUM:+--spectrum "$SPECTRUM"} > "$OUT/recommended.txt"
"$BIN" plan show --recipe step --momentum 0.9 --nu 0.7 "${common[@]}" --toml > "$OUT/step.toml"
"$BIN" plan show --recipe cosine --momentum 0.9 --nu 0.7 "${common[@]}" --toml > "$OUT/cosine.toml"
for plan in recommended step cosine; do
  for seed in $SEEDS; do
    echo "RAYON_NUM_THREADS=1 $BIN train --plan $OUT/$plan.toml --weight-decay 5e-4 \
      --train-subset $SUBSET --seed $seed --quiet --out $OUT/$plan-s$seed"
  done
done | xargs -P "$JOBS" -I{} sh -c '{}'
python3 "$(dirname "$0")/summarize_runs.py" "$OUT"
