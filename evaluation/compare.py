"""`python -m evaluation compare DIR [DIR ...]`: one markdown table of several runs' `summary.json` files.

Rows are models (folders written by `python -m evaluation run`; folders of the same model, dtype and instruction
setting, e.g. one per task, share a row, later tasks winning), columns are tasks (main score x100). A cell whose
sample count differs from the other rows' on that task shows its `n`, so a table that is not like-for-like says so.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def load_summary(folder: str | Path) -> dict[str, Any]:
    """A run folder's `summary.json` (or the file itself), with `name` set to the folder's name."""
    file = Path(folder) / "summary.json" if Path(folder).is_dir() else Path(folder)
    if not file.is_file():
        raise FileNotFoundError(f"{file} does not exist: pass folders written by `python -m evaluation run`")
    summary = json.loads(file.read_text(encoding="utf-8"))
    if not isinstance(summary.get("results"), list):
        raise ValueError(f"{file}: no 'results' list; is it a `python -m evaluation run` summary?")
    return {**summary, "name": file.parent.name}


def compare(folders: list[str | Path], output: str | Path | None = None) -> str:
    """The table for `folders`; also written to `output` when given."""
    if not folders:
        raise ValueError("compare needs at least one run folder")
    rows: dict[tuple, dict[str, Any]] = {}  # (model, dtype, instructions) -> names and {task: result}
    for s in map(load_summary, folders):
        row = rows.setdefault((s.get("model"), s.get("dtype"), s.get("instructions")), {"names": [], "tasks": {}})
        new = {r["task"]: r for r in s["results"]}  # a task scored again moves to the end, as the later result
        row["names"].append(s["name"])
        row["tasks"] = {t: r for t, r in row["tasks"].items() if t not in new} | new
    columns: dict[str, str] = {}  # task -> metric, in first-seen order over the merged rows
    for row in rows.values():
        columns.update({t: r["metric"] for t, r in row["tasks"].items() if t not in columns})
    counts = {t: {row["tasks"][t]["n"] for row in rows.values() if t in row["tasks"]} for t in columns}
    head = ["run", "model", "dtype", "instructions", *(f"{t} ({m})" for t, m in columns.items())]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (model, dtype, instructions), row in rows.items():
        cells = [", ".join(row["names"]), f"`{model or ''}`", str(dtype or "")]
        cells.append("-" if instructions is None else ("yes" if instructions else "no"))
        for task in columns:
            r = row["tasks"].get(task)
            note = f" (n={r['n']})" if r and len(counts[task]) > 1 else ""
            cells.append(f"{100 * r['score']:.2f}{note}" if r else "-")
        lines.append("| " + " | ".join(cells) + " |")
    table = "\n".join(lines) + "\n"
    if output is not None:
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        Path(output).write_text(table, encoding="utf-8")
    return table
