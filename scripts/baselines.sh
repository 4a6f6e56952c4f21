#!/usr/bin/env bash
# Like-for-like table: train baselines with exactly the data, steps and LoRA settings of train/configs/default.yaml
# (a config switch, `--set baseline=NAME`), evaluate them like run.sh evaluates Causal2Vec, and print one table
# next to the Causal2Vec run of `bash run.sh` (run that first). About 12 minutes a baseline on a 2-core CPU
# (echo and incontext cost 2-4x more: their decoder inputs are longer).
#
#   bash scripts/baselines.sh                       # eos and bidirectional
#   BASELINES="eos mean echo" bash scripts/baselines.sh
#   FIT_ARGS="--set steps=5" bash scripts/baselines.sh   # a smoke run
#   TAG=-seed1 C2V=runs/default-seed1 FIT_ARGS="--set seed=1 --set model.seed=1" bash scripts/baselines.sh  # a 2nd seed
#
# Reruns are safe: a baseline whose export exists is not retrained, an unfinished one resumes, and evaluation
# reuses its embedding cache.
set -euo pipefail
cd "$(dirname "$0")/.."

BASELINES=${BASELINES:-eos bidirectional}
C2V=${C2V:-runs/default}
TAG=${TAG:-}   # appended to the run folders: runs/baseline-NAME$TAG
SCIFACT_QUERIES=${SCIFACT_QUERIES:-100}
SCIFACT_CORPUS=${SCIFACT_CORPUS:-400}
read -r -a FIT_EXTRA <<< "${FIT_ARGS:-}"
# shellcheck disable=SC1091
source .venv/bin/activate

evaluate() {  # evaluate NAME MODEL [args]: results in runs/eval/NAME-{stsb,scifact}
  python -m evaluation run --model "$2" --tasks stsb --dtype bf16 --threads 2 --output "runs/eval/$1-stsb" "${@:3}"
  python -m evaluation run --model "$2" --tasks scifact --dtype bf16 --threads 2 --output "runs/eval/$1-scifact" \
    --limit "$SCIFACT_QUERIES" --corpus-limit "$SCIFACT_CORPUS" "${@:3}"
}

runs=()
for name in $BASELINES; do
  out="runs/baseline-$name$TAG"
  if [ -d "$out/checkpoints" ] && [ ! -f "$out/model/model.safetensors" ]; then  # an unfinished run: continue it
    python -m train fit --config train/configs/default.yaml --output "$out" --resume --set "baseline=$name" \
      "${FIT_EXTRA[@]}"
  elif [ ! -f "$out/model/model.safetensors" ]; then
    python -m train fit --config train/configs/default.yaml --output "$out" --set "baseline=$name" "${FIT_EXTRA[@]}"
  fi
  evaluate "baseline-$name$TAG" "$out/model" --baseline "$name"
  runs+=("runs/eval/baseline-$name$TAG-stsb" "runs/eval/baseline-$name$TAG-scifact")
done
c2v=()
for task in stsb scifact; do
  [ -f "runs/eval/$(basename "$C2V")-$task/summary.json" ] && c2v+=("runs/eval/$(basename "$C2V")-$task")
done
python -m evaluation compare "${c2v[@]}" "${runs[@]}" --output "runs/eval/baselines$TAG.md"
