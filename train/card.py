"""The model card (`README.md` with Hub metadata) written into every exported checkpoint.

The metadata is `huggingface_hub`'s `ModelCardData`: the front matter `model_card()` writes (library, pipeline tag,
license, base models, tags, widget) plus `language`, and after `python -m evaluation run --card` the scores as
`eval_results` (the `model-index` the Hub and mteb read). The sentence-transformers config gets the evaluation's
instructions as named prompts.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard

from modeling_causal2vec import model_card, write_sentence_transformers_files

LANGUAGES = ["en"]
TASK_TYPES = {"sts": "STS", "retrieval": "Retrieval", "classification": "Classification"}  # mteb's task types


def task_prompts(config: Any) -> dict[str, str]:
    """The evaluation's instruction for each task as a decoder prompt, keyed by mteb task name where the task has an
    mteb twin (mteb looks prompts up by task name), else by the local task name."""
    from evaluation.tasks import LOCAL_TO_MTEB, load_instructions

    return {LOCAL_TO_MTEB.get(k, k): config.query_prompt(v) for k, v in load_instructions().items()}


def _table(rows: dict[str, Any]) -> str:
    lines = ["| key | value |", "| --- | --- |"]
    lines += [f"| {k} | {json.dumps(v) if isinstance(v, (dict, list)) else v} |" for k, v in rows.items()]
    return "\n".join(lines)


def write_model_card(
    folder: Path,
    config: Any,
    base_models: list[str],
    training: dict[str, Any] | None = None,
    evaluation: dict[str, Any] | None = None,
    data_files: dict[str, int] | None = None,
) -> Path:
    """Write `folder/README.md`: Hub metadata, usage, and what is known of training (and of evaluation, if
    given; `train fit` gives none: `python -m evaluation run --card` adds results later, via `update_evaluation`).
    Also names the evaluation's task prompts in `config_sentence_transformers.json`."""
    body = model_card(config, base_models)
    if data_files:
        body += "\n## Training data\n\n| file | rows |\n| --- | --- |\n"
        body += "\n".join(f"| {name} | {rows} |" for name, rows in data_files.items()) + "\n"
    if training and training.get("baseline"):
        body += (
            f"\n> **Trained as the `{training['baseline']}` baseline**, not as Causal2Vec: these weights hold the"
            " fine-tuned parts, and `AutoModel` loads them as Causal2Vec. Embed the way they were trained with"
            f' `evaluation.baselines.build_baseline("{training["baseline"]}", model)`, or evaluate with'
            f" `python -m evaluation run --model PATH --baseline {training['baseline']}`.\n"
        )
    if training:
        body += "\n## Training\n\n" + _table(training) + "\n"
    if evaluation:
        body += "\n## Evaluation\n\n" + _table(evaluation) + "\n"
    else:
        body += "\n## Evaluation\n\nNo evaluation results are recorded for this checkpoint.\n"
    card = ModelCard(body)
    card.data.language = LANGUAGES
    path = folder / "README.md"
    card.save(path)
    write_sentence_transformers_files(folder, config, task_prompts(config))
    return path


EVAL_HEADING = "## Evaluation\n"
EVAL_NOTE = (
    "Scores x100 from `python -m evaluation run` on local data (STS-B: Spearman; SciFact: nDCG@10; TREC, MR: accuracy)."
)
EVAL_COLUMNS = ["task", "split", "metric", "score", "n", "how"]


def update_evaluation(folder: Path, rows: list[dict[str, Any]], how: str) -> Path:
    """Put `rows` (task, split, metric, score, n), made as `how` says, into the Evaluation section of
    `folder/README.md`: a task's earlier row is replaced, other tasks' rows and the rest of the card are kept."""
    path = Path(folder) / "README.md"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: no model card to update")
    card = ModelCard.load(path)
    text = card.text
    start = text.find(EVAL_HEADING)
    if start < 0:
        head, old, tail = text.rstrip("\n") + "\n\n", "", ""
    else:  # the section runs to the next heading or image line (the loss curve), or to the end
        rest = text[start + len(EVAL_HEADING) :]
        end = re.search(r"^(#{1,2} |!\[)", rest, flags=re.M)
        head, old, tail = text[:start], rest[: end.start()] if end else rest, "\n" + rest[end.start() :] if end else ""
    table: dict[str, list[str]] = {}
    for line in old.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and len(cells) == len(EVAL_COLUMNS) and cells[0] not in ("task", "---"):
            table[cells[0]] = cells
    for r in rows:
        table[r["task"]] = [r["task"], r["split"], r["metric"], f"{100 * r['score']:.2f}", str(r["n"]), how]
    lines = ["| " + " | ".join(EVAL_COLUMNS) + " |", "|" + " --- |" * len(EVAL_COLUMNS)]
    lines += ["| " + " | ".join(cells) + " |" for cells in table.values()]
    section = EVAL_HEADING + "\n" + EVAL_NOTE + "\n\n" + "\n".join(lines) + "\n"
    card.text = head + section + tail
    new = [eval_result(r, how) for r in rows]
    names = {r.dataset_type for r in new}
    card.data.eval_results = [r for r in card.data.eval_results or [] if r.dataset_type not in names] + new
    card.data.model_name = card.data.model_name or Path(folder).resolve().name
    card.save(path)
    return path


def eval_result(row: dict[str, Any], how: str) -> EvalResult:
    """One score (x100, as the card's table) as a `model-index` entry; `dataset_type` is the local task name."""
    from evaluation.tasks import LOCAL_TO_MTEB, TASKS

    task = row["task"]
    kind = TASKS[task].kind if task in TASKS else "feature-extraction"
    return EvalResult(
        task_type=TASK_TYPES.get(kind, kind),
        dataset_type=task,
        dataset_name=LOCAL_TO_MTEB.get(task, task),
        dataset_split=row["split"],
        metric_type=row["metric"],
        metric_value=round(100 * row["score"], 2),
        metric_name=f"{row['metric']} ({how}, n={row['n']})",
    )
