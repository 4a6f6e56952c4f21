"""Readers for the local evaluation sets: STS and classification TSVs, BEIR-layout retrieval folders.

Every reader raises `DataError` naming the file and line of the first bad row.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from causal2vec import SHARED_DATA
from causal2vec.tsv import DataError, STSData, read_jsonl, read_sts, read_tsv  # noqa: F401  (the TSV format lives below)

DEFAULT_DATA = SHARED_DATA / "eval"


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


def read_train_test(train: Path, test: Path) -> tuple[ClassificationData, ClassificationData]:
    """A classification task's train and test files; a test label the train file never has is an error."""
    train_data, test_data = read_classification(train), read_classification(test)
    unknown = sorted(set(test_data.labels) - set(train_data.labels))
    if unknown:
        raise DataError(f"{test}: labels {unknown} never occur in {train}")
    return train_data, test_data


@dataclass
class RetrievalData:
    corpus: dict[str, str]  # doc id -> "title text"
    queries: dict[str, str]  # query id -> text (only queries with judgements)
    qrels: dict[str, dict[str, int]]  # query id -> doc id -> relevance


def _read_jsonl(path: Path, fields: tuple[str, ...]) -> list[dict]:
    out = []
    for lineno, obj in read_jsonl(path):  # checked as read: the first bad line is the one named
        if any(not isinstance(obj.get(k), str) for k in fields):
            raise DataError(f"{path}:{lineno}: expected an object with string fields {list(fields)}")
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
    path = folder / "qrels" / f"{split}.tsv"
    qrels: dict[str, dict[str, int]] = {}
    for line, (qid, did, score) in read_tsv(path, ("query-id", "corpus-id", "score")):
        try:
            rel = int(score)
        except ValueError:
            raise DataError(f"{path}:{line}: score {score!r} is not an integer") from None
        if qid not in queries:
            raise DataError(f"{path}:{line}: query id {qid!r} is not in queries.jsonl")
        if did not in corpus:
            raise DataError(f"{path}:{line}: corpus id {did!r} is not in corpus.jsonl")
        qrels.setdefault(qid, {})[did] = rel
    return RetrievalData(corpus, {q: queries[q] for q in qrels}, qrels)
