"""`python -m evaluation mteb`: a checkpoint through mteb's own evaluation (`mteb.evaluate`), on the local dev
tasks offline or on any mteb task or benchmark (their data from the Hugging Face cache or the Hub), writing mteb's
results folder (`<output>/results/<model name>/<revision>/<Task>.json`, what mteb's leaderboard tooling reads)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from evaluation.tasks import LOCAL_TASKS, resolve


def resolve_tasks(names: list[str] | None, benchmark: str | None, root: Path) -> list[Any]:
    """mteb task objects: a local name (stsb, scifact, trec, mr) is the local copy under mteb's protocol
    (`evaluation.tasks.resolve`); any other name is mteb's task of that name; `benchmark` adds the tasks of an mteb
    benchmark ("MTEB(eng, v2)")."""
    import mteb

    tasks = resolve([n for n in names or () if n in LOCAL_TASKS], root, mteb_protocol=True)
    others = [n for n in names or () if n not in LOCAL_TASKS]
    if others:
        tasks += list(mteb.get_tasks(tasks=others))
    if benchmark:
        tasks += list(mteb.get_benchmark(benchmark).tasks)
    if not tasks:
        raise ValueError("no tasks: pass --tasks and / or --benchmark")
    return tasks


def run(
    model: str | Path,
    tasks: list[Any],
    output: Path,
    dtype: str = "fp32",
    batch_size: int = 32,
    device: str | None = None,
    overwrite: bool = False,
) -> Any:
    """`mteb.evaluate` of the checkpoint folder `model` (its card's instructions as prompts) on `tasks`; results
    under `output` (finished tasks are kept and skipped unless `overwrite`). Returns mteb's `ModelResult`."""
    import mteb
    from mteb.cache import ResultCache

    from evaluation.mteb_model import Causal2VecMTEB

    wrapper = Causal2VecMTEB(model, dtype=dtype, device=device)
    cache = ResultCache(output)
    check_cached(tasks, cache, wrapper.mteb_model_meta, overwrite)
    return mteb.evaluate(
        wrapper,
        tasks,
        cache=cache,
        encode_kwargs={"batch_size": batch_size},
        overwrite_strategy="always" if overwrite else "only-missing",
        show_progress_bar=True,
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


def card_rows(result: Any, tasks: list[Any]) -> list[dict[str, Any]]:
    """One row per task and split of an mteb `ModelResult` for the model card (`evaluation.card`): the task's mteb
    name, type and dataset, its main score."""
    metadata = {t.metadata.name: t.metadata for t in tasks}
    rows = []
    for task in result.task_results:
        meta = metadata[task.task_name]
        for split, scores in task.scores.items():
            rows += [
                {
                    "task": task.task_name,
                    "split": split,
                    "metric": meta.main_score,
                    "score": float(subset["main_score"]),
                    "n": None,
                    "task_type": meta.type,
                    "dataset": meta.dataset["path"],
                    "revision": task.dataset_revision,
                    "subset": subset.get("hf_subset"),
                }
                for subset in scores
            ]
    return rows
