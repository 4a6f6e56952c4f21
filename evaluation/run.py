"""`python -m evaluation run`: one model on the local tasks through mteb (`mteb.evaluate`, its evaluators and
results folder; the tasks and the battery's protocol in `evaluation.tasks`), plus a summary of the main scores."""

from __future__ import annotations

import json
import platform
import re
from pathlib import Path
from typing import Any

from mteb.types import PromptType

from causal2vec.instructions import load_instructions
from evaluation.embedder import Embedder
from evaluation.tasks import LOCAL_NAMES, local_name, resolve


def evaluate(
    embedder: Embedder,
    tasks: list[str],
    data_root: str | Path,
    output: str | Path | None = None,
    instructions: dict[str, str] | None = None,
    limit: int | None = None,
    corpus_limit: int | None = None,
    seed: int = 0,
    model_name: str = "",
    task_limits: dict[str, tuple[int | None, int | None]] | None = None,
) -> dict[str, dict[str, Any]]:
    """Run the local `tasks` (`evaluation.tasks.LOCAL_TASKS` names); `task_limits` gives some tasks their own
    (limit, corpus_limit), e.g. `tasks.DEV_BATTERY`. With `output`: mteb's results folder there
    (`results/<model>/<revision>/<Task>.json`), `summary.json` and `summary.md`. Returns, per local task, its
    mteb scores (`scores[split][0]`), main score, sample size and the prompt its query-side texts got."""
    import mteb
    from mteb.cache import ResultCache

    from evaluation.mteb_model import Causal2VecMTEB

    instructions = load_instructions() if instructions is None else instructions
    limits = {t: (task_limits or {}).get(t, (limit, corpus_limit)) for t in tasks}
    objects = resolve(tasks, Path(data_root), limits, seed)
    slug = re.sub(r"[^\w.-]+", "-", Path(model_name.split(" [")[0]).name or "in-memory")
    prompts = {LOCAL_NAMES[k]: v for k, v in instructions.items() if k in LOCAL_NAMES}
    wrapper = Causal2VecMTEB(embedder, name=f"local/{slug}", instructions=prompts)
    result = mteb.evaluate(
        wrapper,
        objects,
        cache=ResultCache(output) if output is not None else None,
        overwrite_strategy="always",  # the embedding cache makes a rerun cheap; a result is never stale
        encode_kwargs={"batch_size": embedder.batch_size},
        show_progress_bar=False,
    )
    by_name = {t.metadata.name: t for t in objects}
    results = {}
    for task_result in result.task_results:
        task = by_name[task_result.task_name]
        for split, subsets in task_result.scores.items():
            instruction = wrapper.get_instruction(task.metadata, PromptType.query)
            name = local_name(task.metadata.name, split)
            results[name] = {
                "task_name": task.metadata.name,
                "task_type": task.metadata.type,
                # a sample, or our protocol (classification), is not MTEB's task: the card names it as local
                "dataset": task.metadata.dataset["path"] if limits[name] == (None, None) else f"local/{name}",
                "subset": subsets[0].get("hf_subset"),
                "dataset_revision": task_result.dataset_revision,
                "evaluation_time": task_result.evaluation_time,
                "metric": task.metadata.main_score,
                "main_score": subsets[0]["main_score"],
                "n": sample_size(task, split),
                "documents": len(task.dataset["default"][split]["corpus"])
                if task.metadata.type == "Retrieval"
                else None,
                "instruction": instruction if embedder.applies_instructions else None,
                "prompt": wrapper.get_task_instruction(task.metadata, PromptType.query),
                "scores": {split: subsets},
            }
    results = {t: results[t] for t in tasks}
    if output is not None:
        write_summary(results, Path(output), model_name, embedder, limits)
    return results


def sample_size(task: Any, split: str) -> int:
    """Pairs (STS), queries (retrieval) or test examples (classification; cross-validated: all) of a split."""
    data = task.dataset
    if task.metadata.type == "Retrieval":
        return len(data["default"][split]["queries"])
    return len(data[split])


def summary_rows(results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """task (local name), split, metric, score, n, and the mteb task's type, dataset, revision and subset (what
    the card's model-index names): one row per task of `evaluate`'s results."""
    return [
        {
            "task": name,
            "split": next(iter(r["scores"])),
            "metric": r["metric"],
            "score": r["main_score"],
            "n": r["n"],
            **{k: r[k] for k in ("task_type", "dataset", "subset")},
            "revision": r["dataset_revision"],
        }
        for name, r in results.items()
    ]


def write_summary(
    results: dict[str, dict[str, Any]], output: Path, model_name: str, embedder: Embedder, limits: dict[str, Any]
) -> None:
    rows = summary_rows(results)
    meta = {
        "model": model_name,
        "dtype": embedder.dtype,
        "truncate_dim": embedder.truncate_dim,
        "instructions": embedder.use_instructions,
        "prompts": {name: r["prompt"] for name, r in results.items()},
        "limits": limits,
        "machine": platform.machine(),
        "encode_calls": embedder.encode_calls,
        "cache_hits": embedder.cache.hits,
    }
    output.mkdir(parents=True, exist_ok=True)
    (output / "summary.json").write_text(json.dumps({**meta, "results": rows}, indent=2) + "\n")
    lines = [
        f"Model: `{model_name}` ({embedder.dtype})",
        "",
        "| task | split | metric | score | n |",
        "|---|---|---|---|---|",
    ]
    lines += [f"| {r['task']} | {r['split']} | {r['metric']} | {100 * r['score']:.2f} | {r['n']} |" for r in rows]
    (output / "summary.md").write_text("\n".join(lines) + "\n")
