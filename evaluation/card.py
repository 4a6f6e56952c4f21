"""`python -m evaluation run --card`: the scores into a checkpoint's model card, as data (the `causal2vec` field's
`evaluation` rows and the Hub's `model-index`) and as its Evaluation section, both written by `hub_causal2vec`."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard

from hub_causal2vec import CARD_FILE, EVAL_HEADING, METADATA_KEY, evaluation_section, front_matter

ROW_KEYS = ("task", "split", "metric")


def update_evaluation(folder: Path, rows: list[dict[str, Any]], how: str) -> Path:
    """Record `rows` (task, split, metric, score, n), made as `how` says, in the card's data (`model-index` and the
    `causal2vec` field) and its Evaluation section: a task's split scored again (whole or a sample, either protocol)
    replaces its earlier row, other rows and the rest of the card (edits included) are kept. A card without
    Causal2Vec metadata (written by hand, or before the metadata existed) gets these rows."""
    path = Path(folder) / CARD_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: no model card to update")
    card, keys = ModelCard.load(path), {row_key(r) for r in rows}
    kept = [
        r
        for r in card.data.eval_results or []
        if row_key({"task": r.dataset_name, "split": r.dataset_split}) not in keys
    ]
    card.data.eval_results = kept + [eval_result(r, how) for r in rows]
    card.data.model_name = card.data.model_name or Path(folder).resolve().name
    meta = card.data.get(METADATA_KEY) or {}
    added = [
        {**{k: r[k] for k in ROW_KEYS}, "score": float(r["score"]), "n": r.get("n"), "how": how, "name": r["name"]}
        for r in rows
    ]
    table = [r for r in meta.get("evaluation") or [] if row_key(r) not in keys] + added
    if METADATA_KEY in card.data:
        setattr(card.data, METADATA_KEY, {**meta, "evaluation": table})
    # the Evaluation section (to the next heading or image line) replaced, or appended
    text, section = card.text, evaluation_section(table)
    start = text.find(EVAL_HEADING + "\n")
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        rest = text[start + len(EVAL_HEADING) + 1 :]
        end = re.search(r"^(#{1,2} |!\[)", rest, flags=re.M)
        text = text[:start] + section + ("\n" + rest[end.start() :] if end else "")
    path.write_text(front_matter(card.data.to_dict()) + text, encoding="utf-8")
    return path


def row_key(row: dict[str, Any]) -> tuple[str, str]:
    """The task (its MTEB name where it has one: `stsb`, `stsb-dev` and `STSBenchmark` are one) and split a row
    scores."""
    from evaluation.tasks import LOCAL_NAMES

    return LOCAL_NAMES.get(row["task"], row["task"]), row["split"]


def eval_result(row: dict[str, Any], how: str) -> EvalResult:
    """One score (x100, as the card's table) as a `model-index` entry, its task type and dataset those of the mteb
    task it was scored on (`evaluation.run.result_rows`): MTEB's own tasks (local copies included) have MTEB as
    their source, a sample (`local/...`) none."""
    n = f", n={row['n']}" if row.get("n") is not None else ""
    official = bool(row.get("task_type")) and not str(row.get("dataset")).startswith("local/")
    return EvalResult(
        task_type=row.get("task_type") or "feature-extraction",
        dataset_type=row.get("dataset") or row["task"],
        dataset_name=row["name"],
        dataset_split=row["split"],
        dataset_revision=row.get("revision"),
        metric_type=row["metric"],
        metric_value=round(100 * row["score"], 2),
        metric_name=f"{row['metric']} ({how}{n})",
        dataset_config=row.get("subset"),
        source_name="MTEB" if official else None,
        source_url="https://github.com/embeddings-benchmark/mteb" if official else None,
    )
