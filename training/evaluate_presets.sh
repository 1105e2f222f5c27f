#!/usr/bin/env bash
# Recipe: evaluate a trained preset on held-out music with museval, plus the oracle and mixture
# baselines, writing one table per run into OUT (default data-work/eval).
#   training/evaluate_presets.sh 4stems saved_models/4stems [real|synth|all] [OUT]
# real: "Caesium" from ../shared/data/everything-is-free (held out from training);
# synth: the held-out synthetic test set rendered with --seed 2 (see training/README.md).
set -euo pipefail
cd "$(dirname "$0")/.."
preset=$1 model=$2 which=${3:-all} out=${4:-data-work/eval}
mkdir -p "$out"
case $preset in
  2stems) groups=(--stem-group accompaniment=drums,bass,other,piano) ;;
  4stems) groups=(--stem-group other=other,piano) ;;
  5stems) groups=() ;;
esac
run() {  # name data [extra...]
  local name=$1 data=$2; shift 2
  for baseline in model oracle mixture; do
    local table="$out/$name-$preset-$baseline.txt"
    [ -s "$table" ] && [ "$baseline" != model ] && continue   # baselines do not change with training
    .venv/bin/stemtf evaluate "$model" --data "$data" "${groups[@]}" --baseline "$baseline" -q \
      --output-dir "$out/$name-$preset-$baseline" "$@" > "$table.tmp" && mv "$table.tmp" "$table"
    cat "$table"
  done
}
[ "$which" = synth ] || run caesium ../shared/data/everything-is-free --track Caesium
[ "$which" = real ] || run synth-test data-work/synth-test
