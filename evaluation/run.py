"""Both evaluation commands run mteb (`mteb.evaluate`: its evaluators and results folder) over the wrapper
(`evaluation.mteb_model`): `python -m evaluation run` on the local tasks under the dev battery's protocol
(`evaluation.tasks`), with a summary of the main scores; `python -m evaluation mteb` on the local tasks under mteb's
protocol, or on any mteb task or benchmark."""

from __future__ import annotations

import json
import platform
import re
from pathlib import Path
from typing import Any

from evaluation.embedder import Embedder
from evaluation.tasks import LOCAL_TASKS, is_local, local_name, resolve


def run_mteb(
    wrapper: Any, tasks: list[Any], output: Path | None, batch_size: int, overwrite: bool = True, progress: bool = False
) -> Any:
    """`mteb.evaluate` of `wrapper` on `tasks`, results under `output` (None: not written; without `overwrite`,
    finished tasks are kept and skipped). Returns mteb's `ModelResult`."""
    import mteb
    from mteb.cache import ResultCache

    cache = ResultCache(output) if output is not None else None
    if cache is not None:
        check_cached(tasks, cache, wrapper.mteb_model_meta, overwrite)
    return mteb.evaluate(
        wrapper,
        tasks,
        cache=cache,
        encode_kwargs={"batch_size": batch_size},
        overwrite_strategy="always" if overwrite else "only-missing",
        show_progress_bar=progress,
    )


def check_cached(tasks: list[Any], cache: Any, meta: Any, overwrite: bool) -> None:
    """Refuse what mteb would mix up silently (it reuses a saved result by model and task name alone): one task name
    twice in a run (a local copy and mteb's own), or a result saved on other data (another dataset revision)."""
    names = [t.metadata.name for t in tasks]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"{', '.join(twice)} asked twice (the local copy and mteb's?): run each into its own --output")
    if overwrite:  # every saved result is replaced
        return
    for task in tasks:
        path = cache.get_task_result_path(task.metadata.name, meta)
        saved = json.loads(path.read_text()).get("dataset_revision") if path.is_file() else None
        if saved not in (None, task.metadata.revision):
            raise ValueError(
                f"{path} holds {task.metadata.name} on dataset revision {saved}, not {task.metadata.revision} "
                "(other data: the local copy or the Hub's, or edited files): use another --output, or --overwrite "
                "to replace it"
            )


def result_rows(
    result: Any, tasks: list[Any], sampled: set[str] = frozenset(), local_names: bool = False
) -> list[dict[str, Any]]:
    """One row per task, split and subset of an mteb `ModelResult`: the task (mteb's name, or with `local_names`
    the local one, `stsb-dev`), split, main metric and score, sample size (local tasks), what the card's
    model-index names (mteb's task type, dataset, revision, subset; a `sampled` task's dataset is `local/<name>`:
    not MTEB's task), and mteb's scores."""
    by_name = {t.metadata.name: t for t in tasks}
    rows = []
    for task_result in result.task_results:
        task = by_name[task_result.task_name]
        meta = task.metadata
        local = is_local(task)  # no sample size for mteb's own tasks: mteb unloads their data after running them
        for split, subsets in task_result.scores.items():
            name = local_name(meta.name, split) if local_names else meta.name
            rows += [
                {
                    "task": name,
                    "split": split,
                    "metric": meta.main_score,
                    "score": float(scores["main_score"]),
                    "n": sample_size(task, split) if local else None,
                    "task_type": meta.type,
                    # the model-index's dataset: MTEB's task by its name, or a sample of it by the local one
                    "name": local_name(meta.name, split) if name in sampled else meta.name,
                    "dataset": f"local/{name}" if name in sampled else meta.dataset["path"],
                    "revision": task_result.dataset_revision,
                    "subset": scores.get("hf_subset"),
                    "scores": scores,
                }
                for scores in subsets
            ]
    return rows


def sample_size(task: Any, split: str) -> int:
    """Pairs (STS), queries (retrieval) or test examples (classification; cross-validated: all) of a split."""
    if task.metadata.type == "Retrieval":
        return len(task.dataset["default"][split]["queries"])
    return len(task.dataset[split])


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
    """`python -m evaluation run`: the local `tasks` (`evaluation.tasks.LOCAL_TASKS` names) under the battery's
    protocol; `task_limits` gives some tasks their own (limit, corpus_limit), e.g. `tasks.DEV_BATTERY`. With
    `output`: mteb's results folder there (`results/<model>/<revision>/<Task>.json`), `summary.json` and
    `summary.md`. Returns each task's `result_rows` row, with `scores` as mteb's (`{split: [subset scores]}`), the
    retrieval corpus size and the prompt its query-side texts got."""
    from mteb.types import PromptType

    from evaluation.mteb_model import Causal2VecMTEB, mteb_instructions

    limits = {t: (task_limits or {}).get(t, (limit, corpus_limit)) for t in tasks}
    objects = resolve(tasks, Path(data_root), limits, seed)
    slug = re.sub(r"[^\w.-]+", "-", model_name or "in-memory").strip("-")
    # tasks without an instruction get none (not mteb's default prompt), as before the battery ran on mteb
    prompts = mteb_instructions(instructions)
    wrapper = Causal2VecMTEB(embedder, name=f"local/{slug}", instructions=prompts, default_prompts=False)
    output = Path(output) if output is not None else None
    # overwrite: the embedding cache makes a rerun cheap, and a saved result is never stale
    result = run_mteb(wrapper, objects, output, embedder.batch_size)
    sampled = {t for t, limit in limits.items() if limit != (None, None)}
    rows = {r["task"]: r for r in result_rows(result, objects, sampled, local_names=True)}
    results = {}
    for name in tasks:
        task = next(t for t in objects if t.metadata.name == LOCAL_TASKS[name][0])
        row, meta = rows[name], task.metadata
        retrieval = meta.type == "Retrieval"
        instruction = wrapper.instruction(meta, PromptType.query) if embedder.applies_instructions else None
        results[name] = row | {
            "task_name": meta.name,
            "scores": {row["split"]: [row["scores"]]},
            "documents": len(task.dataset["default"][row["split"]]["corpus"]) if retrieval else None,
            "instruction": instruction,
            "prompt": wrapper.get_task_instruction(meta, PromptType.query),
        }
    if output is not None:
        write_summary(results, output, model_name, embedder, limits)
    return results


SUMMARY_KEYS = ("task", "split", "metric", "score", "n", "task_type", "name", "dataset", "revision", "subset")


def summary_rows(results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """`evaluate`'s results as rows (task, split, metric, score, n, and what the card's model-index names)."""
    return [{k: r[k] for k in SUMMARY_KEYS} for r in results.values()]


def write_summary(
    results: dict[str, dict[str, Any]], output: Path, model_name: str, embedder: Embedder, limits: dict[str, Any]
) -> None:
    """`summary.json` (the run's settings and `summary_rows`) and `summary.md` (the main scores) under `output`."""
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
