"""Contrastive training data: validated rows (JSONL, or `datasets` data), then the Trainer's `datasets` objects.

A row is `{"query": str, "pos": [str, ...], "neg": [str, ...], "instruction": str}`; `neg` may be left out
(no hard negatives) and so may `instruction` (the model's default query instruction is used). `load_data` also
reads `datasets` data (a `save_to_disk` folder, parquet files, a Hub id) with sentence-transformers' columns.
"""

from __future__ import annotations

import logging
import random
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
from datasets import Dataset, DatasetDict, Features, IterableDataset, Value, interleave_datasets

from causal2vec.tsv import read_jsonl
from train.config import TrainConfig

logger = logging.getLogger(__name__)


class DataError(ValueError):
    """Malformed training data; the message names the file and line."""


@dataclass(frozen=True)
class Row:
    query: str
    pos: tuple[str, ...]
    neg: tuple[str, ...]
    instruction: str | None


def _strings(value: object, name: str, where: str) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise DataError(f"{where}: {name!r} must be a list of strings, got {type(value).__name__}")
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise DataError(f"{where}: {name}[{i}] must be a string, got {type(item).__name__}")
        if not item.strip():
            raise DataError(f"{where}: {name}[{i}] is an empty string")
    return tuple(value)


def check_row(obj: dict, where: str) -> Row:
    """A `Row` from a dict with the JSONL fields; raises `DataError` naming `where` on anything malformed."""
    for key in ("query", "pos"):
        if key not in obj:
            raise DataError(f"{where}: missing field {key!r}")
    unknown = sorted(set(obj) - {"query", "pos", "neg", "instruction"})
    if unknown:
        raise DataError(f"{where}: unknown field(s) {', '.join(map(repr, unknown))}")
    query, instruction = obj["query"], obj.get("instruction")
    if not isinstance(query, str):
        raise DataError(f"{where}: 'query' must be a string, got {type(query).__name__}")
    if not query.strip():
        raise DataError(f"{where}: 'query' is an empty string")
    if instruction is not None and (not isinstance(instruction, str) or not instruction.strip()):
        raise DataError(f"{where}: 'instruction' must be a non-empty string")
    pos, neg = _strings(obj["pos"], "pos", where), _strings(obj.get("neg", []), "neg", where)
    return Row(query, pos, neg, instruction)


def iter_jsonl(path: Path) -> Iterator[Row]:
    """The rows of one file as they are read (blank lines ignored): what `load_files` collects and a streamed
    training set reads, file and line named in any error."""
    for lineno, obj in read_jsonl(path, DataError):
        yield check_row(obj, f"{path}:{lineno}")


def usable(rows: Iterable[Row], label: str) -> list[Row]:
    """The rows that have a positive: the others are skipped with a warning; none at all is an error."""
    rows = list(rows)
    kept = [row for row in rows if row.pos]
    if len(kept) < len(rows):
        logger.warning("%s: skipped %d row(s) without a positive", label, len(rows) - len(kept))
    if not kept:
        raise DataError(f"{label}: no usable rows")
    return kept


def jsonl_files(path: str | Path) -> list[Path]:
    """A JSONL file, or every `*.jsonl` in a folder (sorted by name)."""
    path = Path(path)
    if path.is_dir():
        files = sorted(path.glob("*.jsonl"))
        if not files:
            raise DataError(f"{path}: no *.jsonl files")
        return files
    if path.is_file():
        return [path]
    raise DataError(f"{path}: no such file or folder")


def load_files(path: str | Path) -> dict[str, list[Row]]:
    """`{file stem: rows}` for a JSONL file or every `*.jsonl` in a folder (sorted by name)."""
    return {file.stem: usable(iter_jsonl(file), str(file)) for file in jsonl_files(path)}


DATASET_MARKERS = ("state.json", "dataset_dict.json")  # what `save_to_disk` writes
HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+(:[\w.-]+)?$")  # owner/name or owner/name:config
# a name ending in one of these is a mistyped local file, not a Hub dataset (`owner/name.v2` stays a Hub id)
FILE_SUFFIXES = (".jsonl", ".json", ".parquet", ".arrow", ".csv", ".tsv", ".txt", ".gz", ".zst", ".bz2", ".xz", ".zip")


def local_reason(path: Path, spec: str) -> str | None:
    """Why `spec` (which resolved to `path`, which does not exist) is read as a local path rather than a Hub id:
    it starts with ./ ../ / or ~, is not `owner/name[:config]`, has a file extension, or its first component
    exists locally. None: a bare `owner/name` with no local trace, which is tried as a Hub dataset id."""
    parts = spec.split("/")
    if spec.startswith(("/", "~")) or parts[0] in (".", ".."):
        return f"it starts with {parts[0]}/"
    if not HUB_ID.match(spec):
        return "it is not of the form owner/name[:config]"
    repo = spec.partition(":")[0]
    if repo.lower().endswith(FILE_SUFFIXES):
        return f"it has a file extension ({Path(repo).suffix})"
    if path.parent.exists():  # `path` is `spec` resolved, so its parent is where spec's first component is
        return f"{parts[0]}/ exists locally"
    return None


def load_data(path: Path, spec: str | None = None) -> tuple[dict[str, list[Row]], dict[str, str]]:
    """Training data from `path`, or from the Hub id `spec` (`owner/name` or `owner/name:config`) when `path`
    does not exist and `spec` does not look like a local path (`local_reason`). Returns `({name: rows}, {name:
    label for the model card})`.

    `path` is a JSONL file or a folder of them (`load_files`), a folder written by `datasets`' `save_to_disk`,
    or a parquet file or folder of them. A `datasets` dataset gives one group (its `train` split, or its only
    split), with columns `anchor`, `positive`, `negative` / `negative_1`, ... or `query`, `pos`, `neg`, and an
    optional `instruction`.
    """
    path = Path(path)
    if path.is_dir() and any((path / m).is_file() for m in DATASET_MARKERS):
        return _one_group(path.name, f"{path.name} (datasets folder)", datasets.load_from_disk(str(path)))
    parquet = [path] if path.suffix == ".parquet" and path.is_file() else []
    if path.is_dir() and not any(path.glob("*.jsonl")):
        parquet = _train_files(path, sorted(path.rglob("*.parquet")))
    if parquet:
        ds = datasets.load_dataset("parquet", data_files=[str(p) for p in parquet], split="train")
        name = path.stem
        return _one_group(name, f"{path.name} ({len(parquet)} parquet file{'s' * (len(parquet) > 1)})", ds)
    if not path.exists() and spec:
        reason = local_reason(path, spec)
        if reason:
            raise DataError(f"{spec}: no such file or folder ({path} does not exist; not a Hub dataset id: {reason})")
        repo, _, config = spec.partition(":")
        try:
            ds = datasets.load_dataset(repo, config or None)
        except Exception as err:  # offline, unknown id, gated...: it may as well be a mistyped local path
            raise DataError(
                f"{spec}: neither a local file or folder ({path} does not exist) nor a Hub dataset that could be "
                f"loaded ({type(err).__name__}: {err}); check the path, or the dataset id and the network"
            ) from err
        return _one_group(repo.split("/")[-1], f"{spec} (Hub dataset)", ds)
    files = load_files(path)
    return files, {name: f"{name}.jsonl" for name in files}


EVAL_SPLITS = ("test", "validation", "valid", "dev", "eval")


def _split_name(path: Path, root: Path) -> str | None:
    """The split a parquet file of a Hub-style folder belongs to (`data/train-00000-of-00001.parquet`,
    `test/part-0.parquet`), if its name or folder says so."""
    for part in [*path.relative_to(root).parent.parts, path.stem]:
        head = re.split(r"[-_.]", part)[0].lower()
        if head == "train" or head in EVAL_SPLITS:
            return head
    return None


def _train_files(root: Path, files: list[Path]) -> list[Path]:
    """The training files of a parquet folder: all of them, or only the train split's when the names show splits
    (never a test or validation split mixed in)."""
    splits = {f: _split_name(f, root) for f in files}
    named = sorted({s for s in splits.values() if s})
    if not named:
        return files
    if "train" not in named:
        raise DataError(f"{root}: parquet files of the split(s) {', '.join(named)} only; no train split to train on")
    return [f for f, s in splits.items() if s == "train"]


def _one_group(name: str, label: str, ds: object) -> tuple[dict[str, list[Row]], dict[str, str]]:
    if isinstance(ds, datasets.DatasetDict):
        splits = list(ds)
        if "train" not in ds and (len(splits) != 1 or splits[0].lower() in EVAL_SPLITS):
            raise DataError(f"{label}: no 'train' split to train on; splits found: {', '.join(splits)}")
        split = "train" if "train" in ds else splits[0]
        ds, label = ds[split], f"{label}, {split} split"
    return {name: usable(dataset_rows(ds, label), label)}, {name: label}


def dataset_rows(ds: object, where: str) -> Iterator[Row]:
    """Rows of a `datasets.Dataset` with sentence-transformers' or this project's columns; a `DataError` names the
    columns found when they fit neither convention."""
    columns = list(ds.column_names)
    if "anchor" in columns:
        query, pos = "anchor", "positive"
        negs = [c for c in columns if c == "negative" or re.fullmatch(r"negative_\d+", c)]
    else:
        query, pos, negs = "query", "pos", [c for c in columns if c == "neg"]
    unknown = sorted(set(columns) - {query, pos, "instruction", *negs})
    if query not in columns or pos not in columns or unknown:
        raise DataError(
            f"{where}: expected columns anchor, positive, negative (or negative_1, negative_2, ...) or query, pos, "
            f"neg, with an optional instruction; found {', '.join(columns)}"
        )
    for i, record in enumerate(ds):
        at = f"{where}: row {i}"
        obj = {"query": record[query], "pos": _texts(record, pos, at), "neg": []}
        for col in negs:
            obj["neg"] += _texts(record, col, at)
        if record.get("instruction") is not None:
            obj["instruction"] = record["instruction"]
        yield check_row(obj, at)


def _texts(record: dict, column: str, where: str) -> list:
    """The texts in one cell: a string is one, a list is several (checked by `check_row`), None is none."""
    value = record[column]
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return value
    raise DataError(f"{where}: column {column!r} holds {type(value).__name__}, not text")


def pair(row: Row, rng: random.Random, cfg: TrainConfig, config: Any) -> dict[str, str]:
    """One training example: the row's query with its query prompt (per row: instructions differ), one positive
    and up to `hard_negatives` negatives drawn with `rng`, documents with the document prompt."""
    doc = config.document_prompt or ""
    negs = rng.sample(row.neg, min(cfg.hard_negatives, len(row.neg)))
    example = {"anchor": config.query_prompt(row.instruction) + row.query, "positive": doc + rng.choice(row.pos)}
    return example | {f"negative_{i + 1}": doc + neg for i, neg in enumerate(negs)}


def training_datasets(rows: dict[str, list[Row]], cfg: TrainConfig, config: Any) -> Any:
    """A `DatasetDict` with columns `anchor`, `positive` (and `negative_1`, ...), one dataset per file, examples
    drawn with the config's seed (`pair`). A file whose rows hold different numbers of negatives becomes one dataset
    per number (`wikiqa`, `wikiqa/1neg`), since a batch's columns are fixed; one smaller than a batch is left out."""
    rng = random.Random(cfg.seed)
    groups: dict[str, dict[str, list[str]]] = {}
    for name, file_rows in rows.items():
        for row in file_rows:
            example = pair(row, rng, cfg, config)
            negatives = len(example) - 2
            key = name if negatives == cfg.hard_negatives else f"{name}/{negatives}neg"
            for column, text in example.items():
                groups.setdefault(key, {}).setdefault(column, []).append(text)
    small = {name: len(c["anchor"]) for name, c in groups.items() if len(c["anchor"]) < cfg.batch_size}
    for name, n in small.items():
        logger.warning(
            "%s: %d row(s) left out: fewer than one batch (%d) hold that many negatives", name, n, cfg.batch_size
        )
    if len(small) == len(groups):
        raise DataError(f"no file has {cfg.batch_size} rows for one batch; lower batch_size")
    return DatasetDict({name: Dataset.from_dict(c) for name, c in groups.items() if name not in small})


def _streamed_rows(files: list[str], seed: int, cfg: TrainConfig, config: Any) -> Iterator[dict[str, str]]:
    rng = random.Random(f"{seed}-{files}")
    for file in files:
        for row in iter_jsonl(Path(file)):
            if row.pos and len(row.neg) >= cfg.hard_negatives:  # fixed columns: rows with fewer negatives are left out
                yield pair(row, rng, cfg, config)


def streamed_dataset(cfg: TrainConfig, config: Any, files: list[Path]) -> Any:
    """The JSONL files as one `IterableDataset` read as training goes (`streaming: true`, for data larger than
    memory): files interleaved row by row, then shuffled in a buffer of `stream_buffer` rows. A bad row stops the
    run naming its file and line when it is reached. What it does not keep (train/README.md): one source per batch,
    no duplicates in a batch, and rows with fewer than `hard_negatives` negatives."""
    columns = ["anchor", "positive", *(f"negative_{i + 1}" for i in range(cfg.hard_negatives))]
    features = Features({c: Value("string") for c in columns})  # known before the first row is read
    kwargs = {"seed": cfg.seed, "cfg": cfg, "config": config}
    parts = [
        IterableDataset.from_generator(_streamed_rows, features=features, gen_kwargs={"files": [str(f)], **kwargs})
        for f in files
    ]
    # each file's rows once per pass, taking turns while files last: a small file is not repeated beside a large one
    whole = "all_exhausted_without_replacement"
    data = parts[0] if len(parts) == 1 else interleave_datasets(parts, seed=cfg.seed, stopping_strategy=whole)
    return data.shuffle(seed=cfg.seed, buffer_size=cfg.stream_buffer)
