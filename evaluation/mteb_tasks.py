"""The dev tasks' local files (`../shared/data/eval`) as mteb tasks: mteb's own task classes, so its evaluators,
protocol and results format, offline.

- `STSBenchmark` and `SciFact` are MTEB's tasks of those names (metadata, main score, evaluator) reading the local
  copies (the same 1,379 test pairs; the same 5,183 documents and 300 test queries); the dataset revision they
  record is `local-` + the files' SHA-256 (the dataset path stays MTEB's), so a result never passes for one made on
  the Hub's files.
- `TREC` and `MR` have no MTEB task: they are mteb classification tasks of the project's own (mteb's logistic
  regression protocol). MR has one file; its test split is fold 0 of the seeded stratified 10 folds the dev
  battery cross-validates over (`evaluation.tasks.cross_validate`), the other nine folds its train split.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mteb
from datasets import Dataset, DatasetDict
from mteb.abstasks.classification import AbsTaskClassification
from mteb.abstasks.retrieval_dataset_loaders import RetrievalSplitData
from mteb.abstasks.task_metadata import TaskMetadata

from evaluation import data
from evaluation.tasks import TASKS, dataset_revision

LOCAL_NAMES = {"stsb": "STSBenchmark", "scifact": "SciFact", "trec": "TREC", "mr": "MR"}  # local task -> mteb name
MR_FOLDS, MR_SEED = 10, 0  # as the dev battery's cross-validation


def local_revision(task: str, root: Path) -> str:
    return "local-" + dataset_revision(TASKS[task], root)[:16]


def official(name: str, task: str, root: Path) -> type:
    """MTEB's task class `name` with its metadata's dataset pointing at the local files."""
    base = type(mteb.get_task(name))
    dataset = {"path": base.metadata.dataset["path"], "revision": local_revision(task, root)}
    metadata = base.metadata.model_copy(update={"dataset": dataset})
    return type(f"Local{name}", (base,), {"metadata": metadata})


def classification_task(
    name: str, description: str, task: str, root: Path, splits: dict[str, tuple[list[str], list[str]]]
) -> Any:
    """An mteb classification task of ours named `name` over `splits` (split -> texts, labels), its data loaded;
    label ids in the order of the train split's sorted labels."""
    metadata = TaskMetadata(
        name=name,
        description=description,
        reference=None,
        dataset={"path": f"local/{task}", "revision": local_revision(task, root)},
        type="Classification",
        category="t2c",
        modalities=["text"],
        eval_splits=["test"],
        eval_langs=["eng-Latn"],
        main_score="accuracy",
        date=None,
        domains=None,
        task_subtypes=None,
        license=None,
        annotations_creators=None,
        dialect=None,
        sample_creation=None,
        bibtex_citation=None,
    )
    labels = sorted(set(splits["train"][1]))
    instance = type(name, (AbsTaskClassification,), {"metadata": metadata})()
    instance.dataset = DatasetDict(
        {
            split: Dataset.from_dict({"text": texts, "label": [labels.index(x) for x in ys]})
            for split, (texts, ys) in splits.items()
        }
    )
    return instance


def local_task(task: str, root: Path = data.DEFAULT_DATA) -> Any:
    """The mteb task over the local files of `task` (stsb, scifact, trec, mr), data read (`DataError`s name the
    file and line)."""
    root = Path(root)
    if task == "stsb":
        sts = data.read_sts(root / TASKS["stsb"].files["test"])
        split = Dataset.from_dict({"sentence1": sts.sentences1, "sentence2": sts.sentences2, "score": sts.scores})
        instance = official("STSBenchmark", task, root)()
        instance.dataset = DatasetDict({"test": split})
    elif task == "scifact":
        beir = data.read_beir(root / TASKS["scifact"].files["folder"])
        split = RetrievalSplitData(
            queries=Dataset.from_list([{"id": q, "text": t} for q, t in beir.queries.items()]),
            corpus=Dataset.from_list([{"id": d, "title": "", "text": t} for d, t in beir.corpus.items()]),
            relevant_docs=beir.qrels,
            top_ranked=None,
        )
        instance = official("SciFact", task, root)()
        instance.dataset = {"default": {"test": split}}
    elif task == "trec":
        files = TASKS["trec"].files
        train, test = data.read_train_test(root / files["train"], root / files["test"])
        about = "TREC question classification (6 coarse classes), local files"
        splits = {"train": (train.texts, train.labels), "test": (test.texts, test.labels)}
        instance = classification_task("TREC", about, task, root, splits)
    elif task == "mr":
        from sklearn.model_selection import StratifiedKFold

        mr = data.read_classification(root / TASKS["mr"].files["data"])
        folds = StratifiedKFold(MR_FOLDS, shuffle=True, random_state=MR_SEED).split(mr.labels, mr.labels)
        about = "Movie review sentence polarity (MR), local file; test: fold 0 of seeded stratified 10 folds"
        splits = {
            split: ([mr.texts[i] for i in idx], [mr.labels[i] for i in idx])
            for split, idx in zip(("train", "test"), next(folds), strict=True)
        }
        instance = classification_task("MR", about, task, root, splits)
    else:
        raise ValueError(f"no local mteb task {task!r}; local tasks: {', '.join(LOCAL_NAMES)}")
    instance.data_loaded = True
    return instance
