"""Headed TSV files without quoting (the format of `../shared/data/eval`), STS pairs read from them, and JSONL
objects: what evaluation reads its sets with, what training reads its rows and evaluates on during a run
(`train/`), and what the corpus job reads (`embed/`), so it lives below them.

Every reader raises `DataError` (or the caller's error class) naming the file and line of the first bad row.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


class DataError(ValueError):
    """Malformed or missing evaluation data (the message names the file and line)."""


def read_jsonl(path: str | Path, error: type[Exception] = DataError) -> Iterator[tuple[int, dict]]:
    """(line number, object) for each non-blank line of a JSONL file, as it is read; `error` names the file and
    line of one that is not UTF-8, not JSON or not a JSON object."""
    path = Path(path)
    if not path.is_file():
        raise error(f"{path}: file not found")
    with path.open("rb") as f:
        for lineno, raw in enumerate(f, 1):
            where = f"{path}:{lineno}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise error(f"{where}: not valid UTF-8 ({err.reason} at byte {err.start})") from None
            if not line.strip():
                continue  # blank lines (a trailing newline) are not rows
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                raise error(f"{where}: not valid JSON ({err.msg} at column {err.colno})") from None
            if not isinstance(obj, dict):
                raise error(f"{where}: expected a JSON object, got {type(obj).__name__}")
            yield lineno, obj


def read_tsv(path: str | Path, columns: tuple[str, ...]) -> list[tuple[int, list[str]]]:
    """Rows of a headed TSV (no quoting) as (line number, fields in `columns` order)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    with path.open(encoding="utf-8", newline="") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader, None)
        if header is None:
            raise DataError(f"{path}: empty file, expected a header with columns {list(columns)}")
        missing = [c for c in columns if c not in header]
        if missing:
            raise DataError(f"{path}:1: header {header} lacks column(s) {missing}")
        index = [header.index(c) for c in columns]
        rows = []
        for row in reader:
            line = reader.line_num
            if not row:
                continue
            if len(row) != len(header):
                raise DataError(
                    f"{path}:{line}: expected {len(header)} tab-separated fields, got {len(row)}: {row!r:.120}"
                )
            rows.append((line, [row[i] for i in index]))
    if not rows:
        raise DataError(f"{path}: no data rows")
    return rows


@dataclass
class STSData:
    sentences1: list[str]
    sentences2: list[str]
    scores: list[float]


def read_sts(path: str | Path) -> STSData:
    """`sentence1\\tsentence2\\tscore` rows."""
    s1, s2, scores = [], [], []
    for line, (a, b, score) in read_tsv(path, ("sentence1", "sentence2", "score")):
        try:
            value = float(score)
        except ValueError:
            raise DataError(f"{path}:{line}: score {score!r} is not a number") from None
        if not math.isfinite(value):
            raise DataError(f"{path}:{line}: score {score!r} is not finite")
        s1.append(a)
        s2.append(b)
        scores.append(value)
    return STSData(s1, s2, scores)
