#!/bin/sh
# Train a preset in segments and score every segment's end on the validation collection.
#
#   training/real/train_and_score.sh RUN_DIR SEGMENT_STEPS LAST_STEP -- TRAIN_PRESETS_ARGS...
#
# e.g. (the 4stems fine-tune recorded in training/README.md):
#   nohup training/real/train_and_score.sh data-work/runs/4stems-real 200 2000 -- 4stems \
#       --from saved_models/4stems --extra-real data-work/real --synth data-work/synth-avl \
#       --learning-rate 1e-4 --lr-schedule constant --warmup-steps 0 --speed-range 0.85 1.15 &
#
# After each segment the run directory (a loadable model) is copied to RUN_DIR-at<step>/ and scored
# by benchmarks/quality.py into data-work/quality/<run>-at<step>.json. Interrupt it at any point and
# run the same command again: finished segments are skipped, training resumes from the last
# checkpoint (--resume is added when RUN_DIR/checkpoint exists; stemtf.train.fit ignores --from
# then, the checkpoint holds the weights). Use a constant learning rate: each segment raises --steps,
# which would reshape a cosine schedule. Every heavy step runs under `nice -n 10`, one at a time.
set -eu
if [ $# -lt 5 ] || [ "$4" != "--" ]; then
    echo "usage: $0 RUN_DIR SEGMENT_STEPS LAST_STEP -- PRESET [train_presets.py options]" >&2
    exit 2
fi
run=$1; segment=$2; last=$3; shift 4
python=${PYTHON:-.venv/bin/python}
name=$(basename "$run")
mkdir -p data-work/quality
step=$segment
while [ "$step" -le "$last" ]; do
    snapshot="$run-at$step"
    score="data-work/quality/$name-at$step.json"
    if [ ! -f "$snapshot/model.weights.h5" ]; then
        if [ -d "$run/checkpoint" ]; then
            nice -n 10 "$python" training/train_presets.py "$@" --output-dir "$run" --steps "$step" \
                --checkpoint-every 100 --resume
        else
            nice -n 10 "$python" training/train_presets.py "$@" --output-dir "$run" --steps "$step" \
                --checkpoint-every 100
        fi
        rm -rf "$snapshot.partial"
        mkdir -p "$snapshot.partial"
        cp "$run/config.json" "$run/model.weights.h5" "$snapshot.partial/"
        mv "$snapshot.partial" "$snapshot"
    fi
    if [ ! -f "$score" ]; then
        nice -n 10 "$python" benchmarks/quality.py "$snapshot" --json "$score" --quiet > "${score%.json}.txt"
    fi
    grep aggregate "${score%.json}.txt"
    step=$((step + segment))
done
