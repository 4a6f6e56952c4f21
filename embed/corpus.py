"""Reading a corpus: JSON lines, parquet, a `datasets` `save_to_disk` folder or a Hub dataset id, into one id column
and one text column (pyarrow), checked row by row; a bad row is named by file and line (JSON lines) or file and row."""

from __future__ import annotations

import hashlib
import json
import re
import warnings
from bisect import bisect_right
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from causal2vec.tsv import read_jsonl

JSONL_SUFFIXES = (".jsonl", ".json", ".ndjson")
HUB_ID = re.compile(r"[\w.-]+(/[\w.-]+)?(:[\w.-]+)?")
SHOWN = 5  # how many bad rows or duplicate ids an error names


class CorpusError(ValueError):
    """The input cannot be read as a corpus; the message names the file and line (or row) at fault."""


@dataclass
class Corpus:
    """`ids` and `texts` (pyarrow, row i of the input at i); `files` (name, first row) for messages; `lines`, for JSON
    lines, the 1-based line of every row in its file."""

    ids: pa.ChunkedArray
    texts: pa.ChunkedArray
    format: str
    source: str
    files: list[tuple[str, int]] = field(default_factory=list)
    lines: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.texts)

    def where(self, row: int) -> str:
        """`file:line` for JSON lines, else `file row N` (N counted from 0 in that file)."""
        if not self.files:
            return f"{self.source} row {row}"
        name, first = self.files[bisect_right([f for _, f in self.files], row) - 1]
        if self.lines is not None:
            return f"{name}:{int(self.lines[row])}"
        return f"{name} row {row - first}"

    def texts_of(self, start: int, stop: int) -> list[str]:
        return self.texts.slice(start, stop - start).to_pylist()

    def fingerprint(self) -> str:
        """SHA-256 of the ids and texts, row by row (how the input was chunked does not matter)."""
        parts = [hashlib.sha256(), hashlib.sha256(), hashlib.sha256()]  # id values, text lengths, text bytes
        for ids, texts in zip(_chunks(self.ids), _chunks(self.texts), strict=True):
            if pa.types.is_integer(ids.type):
                parts[0].update(ids.cast(pa.int64()).to_numpy(zero_copy_only=False).tobytes())
            else:
                parts[0].update(json.dumps(ids.to_pylist()).encode())
            texts = texts.cast(pa.large_string())
            offsets = np.frombuffer(texts.buffers()[1], dtype=np.int64)[texts.offset : texts.offset + len(texts) + 1]
            parts[1].update(np.diff(offsets).tobytes())
            if len(texts):
                parts[2].update(memoryview(texts.buffers()[2])[offsets[0] : offsets[-1]])
        return hashlib.sha256(b"".join(p.digest() for p in parts)).hexdigest()


def _chunks(column: pa.ChunkedArray, rows: int = 1 << 16) -> list[pa.Array]:
    """The column cut at fixed row counts (so two columns of one table line up chunk by chunk)."""
    return [column.slice(start, rows).combine_chunks() for start in range(0, len(column), rows)]


def read_corpus(source: str, text_column: str = "text", id_column: str = "id", split: str = "train") -> Corpus:
    """The ids and texts of `source`: a JSON-lines or parquet file, a folder of them, a `save_to_disk` folder, or a
    `datasets` Hub id (`owner/name[:config]`, `split`). Texts must be strings, ids strings or integers, unique."""
    path = Path(source)
    if path.is_file():
        corpus = _read_files([path], text_column, id_column)
    elif path.is_dir():
        if any((path / name).is_file() for name in ("state.json", "dataset_dict.json")):
            corpus = _read_saved(path, text_column, id_column, split)
        else:
            files = sorted(p for p in path.iterdir() if p.suffix in (*JSONL_SUFFIXES, ".parquet") and p.is_file())
            if not files:
                raise CorpusError(f"{path} holds no .jsonl, .json or .parquet file and is not a save_to_disk folder")
            corpus = _read_files(files, text_column, id_column)
    elif HUB_ID.fullmatch(source) and "/" in source:
        corpus = _read_hub(source, text_column, id_column, split)
    else:
        raise CorpusError(f"input {source!r} does not exist (a file, a folder or a Hub dataset id owner/name)")
    _check(corpus, text_column, id_column)
    return corpus


def _read_files(files: list[Path], text_column: str, id_column: str) -> Corpus:
    kinds = {
        "parquet" if p.suffix == ".parquet" else "jsonl" if p.suffix in JSONL_SUFFIXES else p.suffix for p in files
    }
    if len(kinds) > 1 or not kinds <= {"parquet", "jsonl"}:
        raise CorpusError(f"input files must all be JSON lines ({', '.join(JSONL_SUFFIXES)}) or all .parquet: {files}")
    source = str(files[0]) if len(files) == 1 else str(files[0].parent)
    if kinds == {"jsonl"}:
        return _read_jsonl(files, text_column, id_column, source)
    import pyarrow.parquet as pq

    tables, names, first = [], [], 0
    for path in files:
        schema = pq.read_schema(path)
        _columns_present(schema.names, text_column, id_column, str(path))
        tables.append(pq.read_table(path, columns=[id_column, text_column], memory_map=True))
        names.append((str(path), first))
        first += tables[-1].num_rows
    try:
        table = pa.concat_tables(tables, promote_options="none")
    except pa.ArrowInvalid as e:
        raise CorpusError(f"the parquet files of {source} have different column types: {e}") from e
    return Corpus(table.column(id_column), table.column(text_column), "parquet", source, names)


def _read_jsonl(files: list[Path], text_column: str, id_column: str, source: str) -> Corpus:
    ids: list[str | int] = []
    texts: list[str] = []
    lines: list[int] = []
    names: list[tuple[str, int]] = []
    id_kind: type | None = None
    for path in files:
        names.append((str(path), len(texts)))
        for number, row in read_jsonl(path, CorpusError):
            where = f"{path}:{number}"
            if text_column not in row:
                raise CorpusError(f"{where}: no {text_column!r} field (--text-column); fields: {sorted(row)}")
            if id_column not in row:
                raise CorpusError(f"{where}: no {id_column!r} field (--id-column); fields: {sorted(row)}")
            text, row_id = row[text_column], row[id_column]
            if not isinstance(text, str):
                raise CorpusError(f"{where}: {text_column!r} must be a string, got {type(text).__name__}")
            if isinstance(row_id, bool) or not isinstance(row_id, (str, int)):
                raise CorpusError(f"{where}: {id_column!r} must be a string or an integer, got {row_id!r}")
            id_kind = id_kind or type(row_id)
            if type(row_id) is not id_kind:
                raise CorpusError(
                    f"{where}: {id_column!r} is a {type(row_id).__name__}, earlier ids are "
                    f"{id_kind.__name__}s (all ids must be of one type)"
                )
            ids.append(row_id)
            texts.append(text)
            lines.append(number)
    id_type = pa.int64() if id_kind is int else pa.string()
    return Corpus(
        pa.chunked_array([pa.array(ids, id_type)]),
        pa.chunked_array([pa.array(texts, pa.large_string())]),
        "jsonl",
        source,
        names,
        np.asarray(lines, dtype=np.int64),
    )


def _read_saved(path: Path, text_column: str, id_column: str, split: str) -> Corpus:
    from datasets import DatasetDict, load_from_disk

    data = load_from_disk(str(path))
    if isinstance(data, DatasetDict):
        if split not in data:
            raise CorpusError(f"{path} has no split {split!r} (--split); splits: {sorted(data)}")
        data = data[split]
    return _from_dataset(data, text_column, id_column, "save_to_disk", str(path))


def _read_hub(name: str, text_column: str, id_column: str, split: str) -> Corpus:
    from datasets import load_dataset

    repo, _, config = name.partition(":")
    try:
        data = load_dataset(repo, config or None, split=split)
    except Exception as e:  # offline, unknown repo, no such split: say what was tried
        raise CorpusError(
            f"{name!r} is not a file or folder here, and loading it as a Hub dataset (split {split!r}) failed: "
            f"{type(e).__name__}: {e}"
        ) from e
    return _from_dataset(data, text_column, id_column, "hub", name)


def _from_dataset(data: object, text_column: str, id_column: str, kind: str, source: str) -> Corpus:
    _columns_present(data.column_names, text_column, id_column, source)  # type: ignore[attr-defined]
    data = data.select_columns([id_column, text_column]).flatten_indices()  # type: ignore[attr-defined]
    table = data.data.table  # memory-mapped Arrow
    return Corpus(table.column(id_column), table.column(text_column), kind, source)


def _columns_present(names: list[str], text_column: str, id_column: str, source: str) -> None:
    for option, column in (("--text-column", text_column), ("--id-column", id_column)):
        if column not in names:
            raise CorpusError(f"{source} has no column {column!r} ({option}); columns: {names}")


def _check(corpus: Corpus, text_column: str, id_column: str) -> None:
    """Texts strings without nulls, ids strings or integers without nulls or duplicates; warns of empty texts."""
    texts, ids = corpus.texts, corpus.ids
    if not (pa.types.is_string(texts.type) or pa.types.is_large_string(texts.type)):
        raise CorpusError(f"{corpus.source}: column {text_column!r} must hold strings, it holds {texts.type}")
    if not (pa.types.is_string(ids.type) or pa.types.is_large_string(ids.type) or pa.types.is_integer(ids.type)):
        raise CorpusError(f"{corpus.source}: column {id_column!r} must hold strings or integers, it holds {ids.type}")
    for column, values in ((text_column, texts), (id_column, ids)):
        if values.null_count:
            rows = np.flatnonzero(pc.is_null(values).to_numpy(zero_copy_only=False))[:SHOWN]
            raise CorpusError(f"{column!r} is missing (null) at {', '.join(corpus.where(int(r)) for r in rows)}")
    if len(ids):
        counts = pc.value_counts(ids).flatten()
        repeated = pc.filter(counts[0], pc.greater(counts[1], 1))
        if len(repeated):
            shown = []
            for value in repeated[:SHOWN].to_pylist():
                rows = np.flatnonzero(pc.equal(ids, pa.scalar(value, ids.type)).to_numpy(zero_copy_only=False))
                shown.append(f"{value!r} ({', '.join(corpus.where(int(r)) for r in rows[:SHOWN])})")
            raise CorpusError(f"{len(repeated)} duplicate ids in {corpus.source}: {'; '.join(shown)}")
    empty = np.flatnonzero(pc.equal(pc.binary_length(texts), 0).to_numpy(zero_copy_only=False)) if len(texts) else []
    if len(empty):
        warnings.warn(
            f"{len(empty)} empty texts (embedded as the model embeds '', e.g. {corpus.where(int(empty[0]))})",
            stacklevel=3,
        )
