"""Headed TSV files without quoting (the format of `../shared/data/eval`), and STS pairs read from them: what
evaluation reads its STS and classification sets with, and what training evaluates on during a run
(`train/fit.py`), so it lives below both.

Every reader raises `DataError` naming the file and line of the first bad row.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path


class DataError(ValueError):
    """Malformed or missing evaluation data (the message names the file and line)."""


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
