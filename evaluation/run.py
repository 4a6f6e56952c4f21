"""`python -m evaluation run`: evaluate one model on the local tasks, write per-task JSON and a summary."""

from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Any

from causal2vec.instructions import load_instructions
from evaluation.embedder import Embedder
from evaluation.tasks import TASKS, run_task


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
    """Run `tasks` (names in `TASKS`); write `<task>.json`, `summary.json` and `summary.md` into `output`.
    `task_limits` gives some tasks their own (limit, corpus_limit), e.g. `tasks.DEV_BATTERY`."""
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        raise ValueError(f"unknown task(s) {unknown}; expected some of {sorted(TASKS)}")
    instructions = load_instructions() if instructions is None else instructions
    root = Path(data_root)
    results = {}
    for name in tasks:
        task_limit, task_corpus_limit = (task_limits or {}).get(name, (limit, corpus_limit))
        result = run_task(TASKS[name], embedder, root, instructions, task_limit, task_corpus_limit, seed)
        result["model_name"] = model_name
        results[name] = result
        if output is not None:
            out = Path(output)
            out.mkdir(parents=True, exist_ok=True)
            (out / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    if output is not None:
        write_summary(results, Path(output), model_name, embedder)
    return results


def summary_rows(results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for name, result in results.items():
        (split, (scores,)) = next(iter(result["scores"].items()))
        main = TASKS[name].main_score
        rows.append(
            {
                "task": name,
                "split": split,
                "metric": main,
                "score": scores["main_score"],
                "n": scores.get("num_samples", scores.get("num_queries")),
            }
        )
    return rows


def write_summary(results: dict[str, dict[str, Any]], output: Path, model_name: str, embedder: Embedder) -> None:
    rows = summary_rows(results)
    meta = {
        "model": model_name,
        "dtype": embedder.dtype,
        "truncate_dim": embedder.truncate_dim,
        "instructions": embedder.use_instructions,
        "machine": platform.machine(),
        "encode_calls": embedder.encode_calls,
        "cache_hits": embedder.cache.hits,
    }
    (output / "summary.json").write_text(json.dumps({**meta, "results": rows}, indent=2) + "\n")
    lines = [
        f"Model: `{model_name}` ({embedder.dtype})",
        "",
        "| task | split | metric | score | n |",
        "|---|---|---|---|---|",
    ]
    lines += [f"| {r['task']} | {r['split']} | {r['metric']} | {100 * r['score']:.2f} | {r['n']} |" for r in rows]
    (output / "summary.md").write_text("\n".join(lines) + "\n")
