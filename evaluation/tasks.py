"""The local evaluation files (`../shared/data/eval`) as mteb tasks: mteb's own task classes and evaluators, offline.

- `STSBenchmark` and `SciFact` are MTEB's tasks of those names (metadata, main score, evaluator) reading the local
  copies (the same 1,379 test pairs; the same 5,183 documents and 300 test queries); the dataset revision they
  record is `local-` + the files' SHA-256 (the dataset path stays MTEB's), so a result never passes for one made on
  the Hub's files. `stsb-dev` is STSBenchmark's validation split.
- `TREC` and `MR` have no MTEB task: they are mteb classification tasks of the project's own.

Two protocols (docs/evaluation.md): `python -m evaluation run` (the dev battery) fits mteb's logistic regression on
the whole training split, vectors scaled to unit length (as every other task's cosine), MR cross-validated over 10
folds, and may take seeded samples (`DEV_BATTERY`); `python -m evaluation mteb` keeps mteb's defaults for a task
that sets nothing (8 examples per label, 10 draws, raw vectors) on the whole files, MR's test split fold 0 of 10.
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


def metadata(name: str, description: str, revision: str, splits: list[str]) -> TaskMetadata:
    """An mteb classification task's metadata for a local file that has no MTEB task."""
    none = dict.fromkeys(("reference", "date", "domains", "task_subtypes", "license", "annotations_creators"))
    none |= dict.fromkeys(("dialect", "sample_creation", "bibtex_citation"))
    return TaskMetadata(
        name=name,
        description=description,
        dataset={"path": f"local/{name.lower()}", "revision": revision},
        type="Classification",
        category="t2c",
        modalities=["text"],
        eval_splits=splits,
        eval_langs=["eng-Latn"],
        main_score="accuracy",
        **none,
    )


def classifier() -> Any:
    """The battery's probe: mteb's logistic regression on vectors scaled to unit length. On raw last hidden states
    (norms ~30 for a decoder) lbfgs stops unconverged at max_iter 100 and the score follows the scale."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import Normalizer

    return make_pipeline(Normalizer(), LogisticRegression(max_iter=100))


def classification(name: str, about: str, revision: str, splits: dict[str, data.ClassificationData], **attrs: Any):
    """An mteb classification task named `name` over `splits`, data loaded; label ids in the order of the sorted
    labels of all splits (a sample's test label may miss from its train sample: it counts as wrong). `attrs` set
    mteb's class attributes (evaluator_model, samples_per_label, ...)."""
    labels = sorted({label for d in splits.values() for label in d.labels})
    meta = metadata(name, about, revision, ["test"])
    task = type(name, (AbsTaskClassification,), {"metadata": meta, **attrs})()
    columns = {s: {"text": d.texts, "label": [labels.index(x) for x in d.labels]} for s, d in splits.items()}
    task.dataset = DatasetDict({s: Dataset.from_dict(c) for s, c in columns.items()})
    return task


def official(name: str, revision: str, splits: list[str]) -> Any:
    """MTEB's task `name`, its metadata's dataset revision and eval splits those of the local files."""
    base = type(mteb.get_task(name))
    dataset = {"path": base.metadata.dataset["path"], "revision": revision}
    meta = base.metadata.model_copy(update={"dataset": dataset, "eval_splits": splits})
    return type(f"Local{name}", (base,), {"metadata": meta})()


def subsample(rows: data.ClassificationData, keep: list[int]) -> data.ClassificationData:
    return data.ClassificationData([rows.texts[i] for i in keep], [rows.labels[i] for i in keep])


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
    if task == "STSBenchmark":
        out = official(task, revision, list(files))
        out.dataset = DatasetDict()
        for split, path in files.items():
            sts = data.read_sts(path)
            keep = sample_indices(len(sts.scores), limit, seed)
            rows = {"sentence1": sts.sentences1, "sentence2": sts.sentences2, "score": sts.scores}
            out.dataset[split] = Dataset.from_dict({k: [v[i] for i in keep] for k, v in rows.items()})
    elif task == "SciFact":
        beir = data.read_beir(files["test"])
        qids = sorted(beir.queries)
        qids = [qids[i] for i in sample_indices(len(qids), limit, seed)]
        doc_ids = list(beir.corpus)
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
            about = "TREC question classification (6 coarse classes), local files"
            train, test = data.read_train_test(files["train"], files["test"])
            parts = {"train": train, "test": test}
            parts = {k: subsample(v, sample_indices(len(v.texts), limit, seed)) for k, v in parts.items()}
            out = classification(task, about, revision, parts, **battery)
        else:
            about = "Movie review sentence polarity (MR), local file"
            mr = data.read_classification(files["data"])
            mr = subsample(mr, sample_indices(len(mr.texts), limit, seed))
            if battery:  # mteb's cross-validation (KFold, seeded by the task's seed) over the one split
                attrs = {**battery, "is_cross_validation": True, "n_splits": FOLDS, "train_split": "test"}
                out = classification(task, about + f", {FOLDS}-fold cross-validation", revision, {"test": mr}, **attrs)
            else:
                from sklearn.model_selection import StratifiedKFold

                folds = StratifiedKFold(FOLDS, shuffle=True, random_state=seed).split(mr.labels, mr.labels)
                train, test = (subsample(mr, list(idx)) for idx in next(folds))
                about += f"; test: fold 0 of seeded stratified {FOLDS} folds"
                out = classification(task, about, revision, {"train": train, "test": test})
    out.seed = seed
    out.data_loaded = True
    return out


def resolve(
    names: list[str],
    root: Path,
    limits: dict[str, tuple[int | None, int | None]] | None = None,
    seed: int = 0,
    mteb_protocol: bool = False,
) -> list[Any]:
    """mteb tasks for local task names (`stsb`, `stsb-dev`, ...: STS-B's two splits are one task), each with its
    (limit, corpus_limit) from `limits` (none: the whole files)."""
    unknown = sorted(set(names) - set(LOCAL_TASKS))
    if unknown:
        raise ValueError(f"unknown task(s) {unknown}; expected some of {sorted(LOCAL_TASKS)}")
    splits: dict[str, list[str]] = {}
    for name in names:
        task, split = LOCAL_TASKS[name]
        splits.setdefault(task, []).append(split)
    by_task = {LOCAL_TASKS[n][0]: (limits or {}).get(n, (None, None)) for n in names}
    return [
        local_task(task, root, s, *by_task[task], seed=seed, mteb_protocol=mteb_protocol) for task, s in splits.items()
    ]


def is_local(task: Any) -> bool:
    """Whether an mteb task object reads the local files (`local_task`), not the Hub's."""
    return str(task.metadata.revision).startswith("local-")


def local_name(task: str, split: str) -> str:
    """The local name of an mteb task's split (`STSBenchmark`, `validation` -> `stsb-dev`), else the task's name."""
    return next((n for n, key in LOCAL_TASKS.items() if key == (task, split)), task)


def resolve_tasks(names: list[str] | None, benchmark: str | None, root: Path) -> list[Any]:
    """mteb task objects: a local name (stsb, scifact, trec, mr) is the local copy under mteb's protocol
    (`resolve`); any other name is mteb's task of that name; `benchmark` adds the tasks of an mteb
    benchmark ("MTEB(eng, v2)")."""
    tasks = resolve([n for n in names or () if n in LOCAL_TASKS], root, mteb_protocol=True)
    others = [n for n in names or () if n not in LOCAL_TASKS]
    if others:
        tasks += list(mteb.get_tasks(tasks=others))
    if benchmark:
        tasks += list(mteb.get_benchmark(benchmark).tasks)
    if not tasks:
        raise ValueError("no tasks: pass --tasks and / or --benchmark")
    return tasks
