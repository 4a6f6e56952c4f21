"""The local evaluation files (`../shared/data/eval`) as mteb tasks: mteb's own task classes and evaluators, offline.

`STSBenchmark` (`stsb-dev`: its validation split) and `SciFact` are MTEB's tasks reading the local copies; their
dataset revision is `local-` + the files' SHA-256, so a result never passes for one made on the Hub's files. `TREC`
and `MR` have no MTEB task: they are mteb classification tasks of the project's own. Two protocols for them
(docs/evaluation.md): the dev battery (`python -m evaluation run`) fits mteb's logistic regression once on the whole
training split, on unit-length vectors, MR cross-validated over 10 folds; `python -m evaluation mteb` keeps mteb's
defaults (8 examples per label, 10 draws, raw vectors), MR's test split fold 0 of 10.
"""

from __future__ import annotations

import hashlib
import random
from pathlib import Path
from typing import Any

import mteb
from datasets import Dataset, DatasetDict
from mteb.abstasks.classification import AbsTaskClassification
from mteb.abstasks.retrieval_dataset_loaders import RetrievalSplitData
from mteb.abstasks.task_metadata import TaskMetadata

from evaluation import data
from evaluation.cache import file_sha256

# local name -> (mteb task name, split); the files each reads, relative to the data root
LOCAL_TASKS = {
    "stsb": ("STSBenchmark", "test"),
    "stsb-dev": ("STSBenchmark", "validation"),
    "scifact": ("SciFact", "test"),
    "trec": ("TREC", "test"),
    "mr": ("MR", "test"),
}
FILES = {  # each task's files (STS-B: per split), relative to the data root
    "STSBenchmark": {"validation": "stsb/dev.tsv", "test": "stsb/test.tsv"},
    "SciFact": {"test": "scifact"},
    "TREC": {"train": "trec/train.tsv", "test": "trec/test.tsv"},
    "MR": {"data": "mr/data.tsv"},
}
LOCAL_NAMES = {name: task for name, (task, _) in LOCAL_TASKS.items()}  # local task -> mteb name
DEFAULT_TASKS = ("stsb", "scifact", "trec", "mr")
# The dev battery (`python -m evaluation run --battery`): every model of a comparison is evaluated on exactly these
# samples, at its own lengths. task -> (limit, corpus_limit). STS-B dev is for choosing settings only and is kept out
# of the dev average; SciFact is in-domain (its train claims are training data): all 300 test queries against every
# judged document plus a seeded sample of the others.
DEV_BATTERY: dict[str, tuple[int | None, int | None]] = {
    "stsb-dev": (None, None),
    "stsb": (None, None),
    "scifact": (None, 800),
    "trec": (2000, None),
    "mr": (2000, None),
}
SELECTION_TASKS = ("stsb-dev",)
STS_COLUMNS = ("sentence1", "sentence2", "score")
FOLDS = 10  # MR: the battery cross-validates over 10 folds; mteb's protocol tests on the first of them


def sample_indices(n: int, limit: int | None, seed: int) -> list[int]:
    """Indices of a seeded sample of `limit` items out of `n` (all, in order, when no limit)."""
    if not limit or limit >= n:
        return list(range(n))
    return sorted(random.Random(seed).sample(range(n), limit))


def local_revision(paths: list[Path], sample: str = "") -> str:
    """`local-` + SHA-256 over the data files at `paths` (folders: every file in them), and `sample` (a
    subsample is other data)."""
    h = hashlib.sha256(sample.encode())
    for path in paths:
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for p in files:
            if not p.is_file():
                raise data.DataError(f"{p}: file not found")
            h.update(bytes.fromhex(file_sha256(p)))  # each file's digest, read in blocks
    return "local-" + h.hexdigest()[:16]


def classifier() -> Any:
    """The battery's probe: mteb's logistic regression on vectors scaled to unit length. On raw last hidden states
    (norms ~30 for a decoder) lbfgs stops unconverged at max_iter 100 and the score follows the scale."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import Normalizer

    return make_pipeline(Normalizer(), LogisticRegression(max_iter=100))


def classification(name: str, about: str, revision: str, splits: dict[str, list[tuple[str, str]]], **attrs: Any):
    """An mteb classification task over `splits` of (text, label) rows, data loaded; label ids in the order of the
    sorted labels of all splits (a sample's test label may miss from its train sample: it counts as wrong). `attrs`
    set mteb's class attributes (evaluator_model, samples_per_label, ...)."""
    none = ("reference", "date", "domains", "task_subtypes", "license", "annotations_creators", "dialect")
    meta = TaskMetadata(
        **dict.fromkeys((*none, "sample_creation", "bibtex_citation")),
        name=name,
        description=about,
        dataset={"path": f"local/{name.lower()}", "revision": revision},
        type="Classification",
        category="t2c",
        modalities=["text"],
        eval_splits=["test"],
        eval_langs=["eng-Latn"],
        main_score="accuracy",
    )
    task = type(name, (AbsTaskClassification,), {"metadata": meta, **attrs})()
    labels = sorted({label for rows in splits.values() for _, label in rows})
    columns = {s: {"text": [t for t, _ in r], "label": [labels.index(x) for _, x in r]} for s, r in splits.items()}
    task.dataset = DatasetDict({s: Dataset.from_dict(c) for s, c in columns.items()})
    return task


def official(name: str, revision: str, splits: list[str]) -> Any:
    """MTEB's task `name`, its metadata's dataset revision and eval splits those of the local files."""
    base = type(mteb.get_task(name))
    dataset = {"path": base.metadata.dataset["path"], "revision": revision}
    meta = base.metadata.model_copy(update={"dataset": dataset, "eval_splits": splits})
    return type(f"Local{name}", (base,), {"metadata": meta})()


def local_task(
    task: str,
    root: Path = data.DEFAULT_DATA,
    splits: list[str] | None = None,
    limit: int | None = None,
    corpus_limit: int | None = None,
    seed: int = 0,
    mteb_protocol: bool = False,
) -> Any:
    """The mteb task `task` (STSBenchmark, SciFact, TREC, MR) over the local files, data read (`DataError`s name
    the file and line). `limit`: a seeded sample of STS pairs, queries, or classification examples per split;
    `corpus_limit`: the retrieval corpus cut to the kept queries' judged documents plus a seeded sample of the
    others. `mteb_protocol`: mteb's classification defaults (module docstring) instead of the battery's."""
    if task not in FILES:
        raise ValueError(f"no local mteb task {task!r}; local tasks: {', '.join(FILES)}")
    files = {k: Path(root) / rel for k, rel in FILES[task].items()}
    if task == "STSBenchmark":
        files = {k: v for k, v in files.items() if k in (splits or ["test"])}
    # a sample, or the battery's classification protocol, is other data than the whole files under mteb's
    protocol = "battery" if task in ("TREC", "MR") and not mteb_protocol else ""
    sample = f"{limit}-{corpus_limit}-{seed}-{protocol}" if limit or corpus_limit or protocol else ""
    revision = local_revision(list(files.values()), sample)

    def pick(items: list) -> list:
        return [items[i] for i in sample_indices(len(items), limit, seed)]

    if task == "STSBenchmark":
        out = official(task, revision, list(files))
        out.dataset = DatasetDict()
        for split, path in files.items():
            sts = data.read_sts(path)
            rows = zip(sts.sentences1, sts.sentences2, sts.scores, strict=True)
            out.dataset[split] = Dataset.from_list(pick([dict(zip(STS_COLUMNS, r, strict=True)) for r in rows]))
    elif task == "SciFact":
        beir = data.read_beir(files["test"])
        qids, doc_ids = pick(sorted(beir.queries)), list(beir.corpus)
        if corpus_limit and corpus_limit < len(doc_ids):
            judged = {d for q in qids for d in beir.qrels[q]}
            others = [d for d in doc_ids if d not in judged]
            keep = judged | set(random.Random(seed).sample(others, max(0, corpus_limit - len(judged))))
            doc_ids = [d for d in doc_ids if d in keep]
        out = official(task, revision, ["test"])
        split = RetrievalSplitData(
            queries=Dataset.from_dict({"id": qids, "text": [beir.queries[q] for q in qids]}),
            corpus=Dataset.from_dict(
                {"id": doc_ids, "title": [""] * len(doc_ids), "text": [beir.corpus[d] for d in doc_ids]}
            ),
            relevant_docs={q: beir.qrels[q] for q in qids},
            top_ranked=None,
        )
        out.dataset = {"default": {"test": split}}
    else:
        # the battery: one fit on every training example (no undersampling, one experiment), unit-length vectors
        battery = {"evaluator_model": classifier(), "samples_per_label": 10**9, "n_experiments": 1}
        battery = {} if mteb_protocol else battery
        if task == "TREC":
            read = data.read_train_test(files["train"], files["test"])
            about = "TREC question classification (6 coarse classes), local files"
        else:
            read = (data.read_classification(files["data"]),)
            about = "Movie review sentence polarity (MR), local file"
        parts = {k: pick(list(zip(d.texts, d.labels, strict=True))) for k, d in zip(files, read, strict=True)}
        if task == "MR" and battery:  # mteb's cross-validation (KFold, seeded by the task's seed) over the one split
            battery |= {"is_cross_validation": True, "n_splits": FOLDS, "train_split": "test"}
            parts, about = {"test": parts["data"]}, about + f", {FOLDS}-fold cross-validation"
        elif task == "MR":
            from sklearn.model_selection import StratifiedKFold

            labels = [label for _, label in parts["data"]]
            train, test = next(StratifiedKFold(FOLDS, shuffle=True, random_state=seed).split(labels, labels))
            parts = {"train": [parts["data"][i] for i in train], "test": [parts["data"][i] for i in test]}
            about += f"; test: fold 0 of seeded stratified {FOLDS} folds"
        out = classification(task, about, revision, parts, **battery)
    out.seed = seed
    out.data_loaded = True
    return out


def resolve(
    names: list[str],
    root: Path,
    limits: dict[str, tuple[int | None, int | None]] | None = None,
    seed: int = 0,
    mteb_protocol: bool = False,
    benchmark: str | None = None,
) -> list[Any]:
    """mteb tasks: local task names (`stsb`, `stsb-dev`, ...: STS-B's two splits are one task) read the local files,
    each with its (limit, corpus_limit) from `limits` (none: the whole files); under `mteb_protocol` any other name
    is mteb's task of that name, and `benchmark` adds an mteb benchmark's tasks ("MTEB(eng, v2)")."""
    local = [n for n in names if n in LOCAL_TASKS]
    others = [n for n in names if n not in LOCAL_TASKS]
    if others and not mteb_protocol:
        raise ValueError(f"unknown task(s) {sorted(set(others))}; expected some of {sorted(LOCAL_TASKS)}")
    splits: dict[str, list[str]] = {}
    for task, split in (LOCAL_TASKS[n] for n in local):
        splits.setdefault(task, []).append(split)
    by_task = {LOCAL_TASKS[n][0]: (limits or {}).get(n, (None, None)) for n in local}
    tasks = [local_task(t, root, s, *by_task[t], seed=seed, mteb_protocol=mteb_protocol) for t, s in splits.items()]
    tasks += list(mteb.get_tasks(tasks=others)) if others else []
    tasks += list(mteb.get_benchmark(benchmark).tasks) if benchmark else []
    if not tasks and mteb_protocol:
        raise ValueError("no tasks: pass --tasks and / or --benchmark")
    return tasks


def is_local(task: Any) -> bool:
    """Whether an mteb task object reads the local files (`local_task`), not the Hub's."""
    return str(task.metadata.revision).startswith("local-")


def local_name(task: str, split: str) -> str:
    """The local name of an mteb task's split (`STSBenchmark`, `validation` -> `stsb-dev`), else the task's name."""
    return next((n for n, key in LOCAL_TASKS.items() if key == (task, split)), task)
