"""Readers for the local evaluation sets: STS and classification TSVs, BEIR-layout retrieval folders.

Every reader raises `DataError` naming the file and line of the first bad row.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path

from causal2vec import SHARED_DATA

DEFAULT_DATA = SHARED_DATA / "eval"


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


@dataclass
class ClassificationData:
    texts: list[str]
    labels: list[str]


def read_classification(path: str | Path) -> ClassificationData:
    """`text\\tlabel` rows; labels are non-empty strings without surrounding whitespace."""
    texts, labels = [], []
    for line, (text, label) in read_tsv(path, ("text", "label")):
        if not label or label != label.strip():
            raise DataError(f"{path}:{line}: label {label!r} is empty or has surrounding whitespace")
        texts.append(text)
        labels.append(label)
    if len(set(labels)) < 2:
        raise DataError(f"{path}: needs at least two distinct labels, found {sorted(set(labels))}")
    return ClassificationData(texts, labels)


@dataclass
class RetrievalData:
    corpus: dict[str, str]  # doc id -> "title text"
    queries: dict[str, str]  # query id -> text (only queries with judgements)
    qrels: dict[str, dict[str, int]]  # query id -> doc id -> relevance


def _read_jsonl(path: Path, fields: tuple[str, ...]) -> list[dict]:
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    out = []
    with path.open(encoding="utf-8") as f:
        for line, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw)
            except json.JSONDecodeError as err:
                raise DataError(f"{path}:{line}: invalid JSON ({err.msg})") from None
            if not isinstance(obj, dict) or any(not isinstance(obj.get(k), str) for k in fields):
                raise DataError(f"{path}:{line}: expected an object with string fields {list(fields)}")
            out.append(obj)
    return out


def read_beir(folder: str | Path, split: str = "test") -> RetrievalData:
    """A BEIR folder: corpus.jsonl, queries.jsonl, qrels/<split>.tsv. Documents embed as "title text"."""
    folder = Path(folder)
    corpus = {}
    for doc in _read_jsonl(folder / "corpus.jsonl", ("_id", "text")):
        title = doc.get("title") or ""
        corpus[doc["_id"]] = f"{title} {doc['text']}".strip() if isinstance(title, str) else doc["text"]
    queries = {q["_id"]: q["text"] for q in _read_jsonl(folder / "queries.jsonl", ("_id", "text"))}
    qrels_path = folder / "qrels" / f"{split}.tsv"
    qrels: dict[str, dict[str, int]] = {}
    for line, (qid, did, score) in read_tsv(qrels_path, ("query-id", "corpus-id", "score")):
        try:
            rel = int(score)
        except ValueError:
            raise DataError(f"{qrels_path}:{line}: score {score!r} is not an integer") from None
        if qid not in queries:
            raise DataError(f"{qrels_path}:{line}: query id {qid!r} is not in queries.jsonl")
        if did not in corpus:
            raise DataError(f"{qrels_path}:{line}: corpus id {did!r} is not in corpus.jsonl")
        qrels.setdefault(qid, {})[did] = rel
    return RetrievalData(corpus, {q: queries[q] for q in qrels}, qrels)
