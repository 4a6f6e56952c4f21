"""`python -m evaluation compare DIR [DIR ...]`: one markdown table of several runs' `summary.json` files.

Rows are models (folders written by `python -m evaluation run`; folders of the same model, dtype and instruction
setting, e.g. one per task, share a row), columns are tasks (main score x100). A cell whose sample count differs
from the other rows' on that task shows its `n`, so a table that is not like-for-like says so.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def load_summary(folder: str | Path) -> dict[str, Any]:
    """A run folder's `summary.json` (or the file itself), with `name` set to the folder's name."""
    path = Path(folder)
    file = path / "summary.json" if path.is_dir() else path
    if not file.is_file():
        raise FileNotFoundError(f"{file} does not exist: pass folders written by `python -m evaluation run`")
    summary = json.loads(file.read_text(encoding="utf-8"))
    if not isinstance(summary.get("results"), list):
        raise ValueError(f"{file}: no 'results' list; is it a `python -m evaluation run` summary?")
    return {**summary, "name": file.parent.name}


def merge_rows(summaries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Merge summaries of the same (model, dtype, instructions) into one, names joined, later tasks winning."""
    rows: dict[tuple, dict[str, Any]] = {}
    for s in summaries:
        key = (s.get("model"), s.get("dtype"), s.get("instructions"))
        if key not in rows:
            rows[key] = {**s, "results": list(s["results"])}
            continue
        row = rows[key]
        row["name"] += ", " + s["name"]
        tasks = {r["task"] for r in s["results"]}
        row["results"] = [r for r in row["results"] if r["task"] not in tasks] + list(s["results"])
    return list(rows.values())


def compare_table(summaries: list[dict[str, Any]]) -> str:
    """Markdown: one row per model (names, model, dtype, instructions), one column per task in first-seen order."""
    summaries = merge_rows(summaries)
    columns: dict[str, str] = {}
    for s in summaries:
        for r in s["results"]:
            columns.setdefault(r["task"], r["metric"])
    counts: dict[str, set[Any]] = {t: set() for t in columns}
    for s in summaries:
        for r in s["results"]:
            counts[r["task"]].add(r["n"])
    head = ["run", "model", "dtype", "instructions", *(f"{t} ({m})" for t, m in columns.items())]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for s in summaries:
        by_task = {r["task"]: r for r in s["results"]}
        cells = [s["name"], f"`{s.get('model', '')}`", str(s.get("dtype", "")), _yes_no(s.get("instructions"))]
        for task in columns:
            r = by_task.get(task)
            if r is None:
                cells.append("-")
                continue
            cell = f"{100 * r['score']:.2f}"
            cells.append(cell + (f" (n={r['n']})" if len(counts[task]) > 1 else ""))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _yes_no(value: Any) -> str:
    return "-" if value is None else ("yes" if value else "no")


def compare(folders: list[str | Path], output: str | Path | None = None) -> str:
    """The table for `folders`; also written to `output` when given."""
    if not folders:
        raise ValueError("compare needs at least one run folder")
    table = compare_table([load_summary(f) for f in folders])
    if output is not None:
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        Path(output).write_text(table, encoding="utf-8")
    return table
