"""The evaluation tasks (STS, retrieval, classification) on local files, each returning an MTEB-style result."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from evaluation import data, metrics
from evaluation.cache import file_sha256
from evaluation.embedder import Embedder


@dataclass
class TaskSpec:
    """One evaluation task: `kind` is sts, retrieval or classification; `files` are relative to the data root."""

    name: str
    kind: str
    files: dict[str, str]
    main_score: str
    split: str = "test"
    options: dict[str, Any] = field(default_factory=dict)


TASKS = {
    "stsb": TaskSpec("stsb", "sts", {"test": "stsb/test.tsv"}, "cosine_spearman"),
    "stsb-dev": TaskSpec("stsb-dev", "sts", {"test": "stsb/dev.tsv"}, "cosine_spearman", split="dev"),
    "scifact": TaskSpec("scifact", "retrieval", {"folder": "scifact"}, "ndcg_at_10"),
    "trec": TaskSpec("trec", "classification", {"train": "trec/train.tsv", "test": "trec/test.tsv"}, "accuracy"),
    "mr": TaskSpec("mr", "classification", {"data": "mr/data.tsv"}, "accuracy", options={"folds": 10}),
}
DEFAULT_TASKS = ("stsb", "scifact", "trec", "mr")
# The dev battery (`python -m evaluation run --battery`): every model of a comparison is evaluated on exactly these
# samples, at its own lengths. task -> (limit, corpus_limit), as `run_task` takes them. STS-B dev is for choosing
# settings only and is kept out of the dev average; SciFact is in-domain (its train claims are training data):
# all 300 test queries against every judged document plus a seeded sample of the others.
DEV_BATTERY: dict[str, tuple[int | None, int | None]] = {
    "stsb-dev": (None, None),
    "stsb": (None, None),
    "scifact": (None, 800),
    "trec": (2000, None),
    "mr": (2000, None),
}
SELECTION_TASKS = ("stsb-dev",)


def sample_indices(n: int, limit: int | None, seed: int) -> list[int]:
    """Indices of a seeded sample of `limit` items out of `n` (all, in order, when no limit)."""
    if not limit or limit >= n:
        return list(range(n))
    return sorted(random.Random(seed).sample(range(n), limit))


def run_sts(embedder: Embedder, path: Path, instruction: str | None, limit: int | None = None, seed: int = 0) -> dict:
    """Spearman of cosine similarity; both sentences get the instruction (symmetric task)."""
    sts = data.read_sts(path)
    keep = sample_indices(len(sts.scores), limit, seed)
    s1 = [sts.sentences1[i] for i in keep]
    s2 = [sts.sentences2[i] for i in keep]
    texts = list(dict.fromkeys(s1 + s2))
    emb = embedder.embed(texts, instruction, desc=f"{path.name} sentences")
    row = {t: i for i, t in enumerate(texts)}
    scores = metrics.sts_scores(emb[[row[t] for t in s1]], emb[[row[t] for t in s2]], [sts.scores[i] for i in keep])
    return {**scores, "num_samples": len(keep)}


@dataclass
class RetrievalSet:
    """A retrieval task's sample, embedded: query ids, document ids, their judgements and embeddings (row i of
    `query_emb` is query `qids[i]`, row j of `doc_emb` document `doc_ids[j]`)."""

    qids: list[str]
    doc_ids: list[str]
    qrels: dict[str, dict[str, int]]
    query_emb: np.ndarray
    doc_emb: np.ndarray

    def scores(self, idx: np.ndarray, val: np.ndarray) -> dict:
        """`metrics.retrieval_scores` of a ranking: `idx[i]` the document rows ranked for query i, `val[i]` their
        scores, best first (what `metrics.top_k` returns)."""
        ids = self.doc_ids
        run = {q: {ids[j]: float(s) for j, s in zip(idx[i], val[i], strict=True)} for i, q in enumerate(self.qids)}
        scores = metrics.retrieval_scores(self.qrels, run)
        return {**scores, "num_queries": len(self.qids), "num_documents": len(self.doc_ids)}


def embed_retrieval(
    embedder: Embedder,
    folder: Path,
    instruction: str | None,
    limit: int | None = None,
    corpus_limit: int | None = None,
    seed: int = 0,
    split: str = "test",
) -> RetrievalSet:
    """The judged queries (a seeded sample of `limit`) and documents of a BEIR folder, embedded; only queries get
    the instruction. `corpus_limit` keeps every judged document of the kept queries plus a seeded sample of the
    others."""
    beir = data.read_beir(folder, split)
    qids = sorted(beir.queries)
    qids = [qids[i] for i in sample_indices(len(qids), limit, seed)]
    doc_ids = list(beir.corpus)
    if corpus_limit and corpus_limit < len(doc_ids):
        judged = {d for q in qids for d in beir.qrels[q]}
        others = [d for d in doc_ids if d not in judged]
        extra = random.Random(seed).sample(others, max(0, corpus_limit - len(judged)))
        keep = judged | set(extra)
        doc_ids = [d for d in doc_ids if d in keep]
    doc_emb = embedder.embed([beir.corpus[d] for d in doc_ids], None, desc=f"{folder.name} corpus")
    query_emb = embedder.embed([beir.queries[q] for q in qids], instruction, desc=f"{folder.name} queries")
    return RetrievalSet(qids, doc_ids, {q: beir.qrels[q] for q in qids}, query_emb, doc_emb)


def cross_validate(emb: np.ndarray, labels: list[str], folds: int = 10, seed: int = 0) -> dict[str, float]:
    """Mean accuracy and macro F1 of `metrics.classification_accuracy` over seeded stratified k folds.

    Row i of `emb` is the embedding of the text labelled `labels[i]`."""
    from sklearn.model_selection import StratifiedKFold

    if len(emb) != len(labels):
        raise ValueError(f"{len(emb)} embeddings for {len(labels)} labels")
    y = np.array(labels)
    scores = [
        metrics.classification_accuracy(emb[train], list(y[train]), emb[test], list(y[test]), seed=seed)
        for train, test in StratifiedKFold(folds, shuffle=True, random_state=seed).split(emb, y)
    ]
    return {**{k: float(np.mean([s[k] for s in scores])) for k in scores[0]}, "folds": folds}


def run_classification(
    embedder: Embedder,
    files: dict[str, Path],
    instruction: str | None,
    limit: int | None = None,
    seed: int = 0,
    folds: int = 10,
) -> dict:
    """Logistic regression on frozen embeddings: train/test files, or stratified k-fold on one `data` file.

    One fit on the whole training split (or on k-1 folds), not mteb v2's protocol (see RESULTS.md)."""
    if "data" in files:
        full = data.read_classification(files["data"])
        keep = sample_indices(len(full.texts), limit, seed)
        texts, labels = [full.texts[i] for i in keep], [full.labels[i] for i in keep]
        emb = embedder.embed(texts, instruction, desc=f"{files['data'].name}")
        return {**cross_validate(emb, labels, folds, seed), "num_samples": len(texts)}
    train, test = data.read_train_test(files["train"], files["test"])
    tr = sample_indices(len(train.texts), limit, seed)
    te = sample_indices(len(test.texts), limit, seed)
    train_x = embedder.embed([train.texts[i] for i in tr], instruction, desc=f"{files['train'].name}")
    test_x = embedder.embed([test.texts[i] for i in te], instruction, desc=f"{files['test'].name}")
    scores = metrics.classification_accuracy(
        train_x, [train.labels[i] for i in tr], test_x, [test.labels[i] for i in te], seed=seed
    )
    return {**scores, "num_train": len(tr), "num_samples": len(te)}


def dataset_revision(spec: TaskSpec, root: Path) -> str:
    """SHA-256 over the task's data files (the "revision" of a local dataset)."""
    import hashlib

    h = hashlib.sha256()
    for rel in sorted(spec.files.values()):
        path = root / rel
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for p in files:
            if not p.is_file():
                raise data.DataError(f"{p}: file not found")
            h.update(file_sha256(p).encode())
    return h.hexdigest()


def task_instruction(spec: TaskSpec, instructions: dict[str, str]) -> str | None:
    """The instruction of a task (`stsb-dev` shares `stsb`'s), None for none."""
    return instructions.get(spec.name.split("-")[0])


def run_task(
    spec: TaskSpec,
    embedder: Embedder,
    root: Path,
    instructions: dict[str, str],
    limit: int | None = None,
    corpus_limit: int | None = None,
    seed: int = 0,
) -> dict:
    """Run one task and return an MTEB-style result dict (`scores[split][0]` holds the metrics)."""
    instruction = task_instruction(spec, instructions)
    files = {k: root / v for k, v in spec.files.items()}
    start = time.perf_counter()
    if spec.kind == "sts":
        scores = run_sts(embedder, files["test"], instruction, limit, seed)
    elif spec.kind == "retrieval":
        sample = embed_retrieval(embedder, files["folder"], instruction, limit, corpus_limit, seed, spec.split)
        scores = sample.scores(*metrics.top_k(sample.query_emb, sample.doc_emb, 100))  # cosine top-100
    elif spec.kind == "classification":
        scores = run_classification(embedder, files, instruction, limit, seed, **spec.options)
    else:
        raise ValueError(f"unknown task kind {spec.kind!r}")
    return {
        "task_name": spec.name,
        "dataset_revision": dataset_revision(spec, root),
        "evaluation_time": time.perf_counter() - start,
        "instruction": instruction if embedder.applies_instructions else None,
        "prompt": embedder.prompt(instruction),  # what preceded the query-side texts
        "dtype": embedder.dtype,
        "truncate_dim": embedder.truncate_dim,
        "limit": limit,
        "scores": {
            spec.split: [
                {**scores, "main_score": scores[spec.main_score], "hf_subset": "default", "languages": ["eng-Latn"]}
            ]
        },
    }
