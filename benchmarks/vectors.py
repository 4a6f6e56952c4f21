"""Shorter and smaller vectors: one model's dev-battery scores at several embedding sizes, and SciFact nDCG@10 with
float32, int8 and binary document vectors.

    python -m benchmarks.vectors --model runs/default/model --threads 2
    python -m benchmarks.vectors --model runs/default/model --dims 1152 576 256 128 --tasks stsb-dev scifact

Shorter: each task of `--tasks` runs as `python -m evaluation run --battery` runs it (its samples, instructions,
dtype and embedding cache) on the first k dimensions of the full-size embeddings (`Embedder(truncate_dim=k)`: what
`encode(truncate_dim=k)` returns; every score is a cosine, so it is also the renormalised prefix the server returns
for `dimensions`). The model embeds once, at full size; where `runs/eval-cache` holds the battery run's embeddings
at the same `--dtype` (bf16, as `run.sh` runs it), it does not embed at all.

Smaller: the battery's SciFact sample (every test query against the judged documents plus a seeded sample of the
others, `DEV_BATTERY`) at each size of `--quantize-dims` (default: full and half: for Causal2Vec, C + EOS and C
alone), the prefix scaled to unit length; the documents quantized with sentence-transformers'
`quantize_embeddings` (int8 with ranges from these documents' embeddings, or ubinary: one bit a dimension), the
queries kept float32, searched as sentence-transformers' `semantic_search_usearch` searches: a first stage ranks by
int8 inner product (the query quantized with the same ranges) or by Hamming distance and keeps `--top-k` documents,
or `--rescore-multiplier` times as many to rescore by the float32 query's dot product with the dequantized int8 or
unpacked 0/1 vectors. Ties at a cut go to the earlier document. The float32 row is exact cosine search, the
battery's own SciFact nDCG@10.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from causal2vec import REPO_ROOT
from evaluation.cache import DEFAULT_CACHE
from evaluation.data import DEFAULT_DATA
from evaluation.embedder import Embedder
from evaluation.metrics import normalize
from evaluation.run import evaluate, summary_rows
from evaluation.tasks import DEV_BATTERY, LOCAL_TASKS, local_task

PRECISIONS = ("float32", "int8", "ubinary")
RETRIEVAL = "scifact"  # the task of the precision table
METRICS = ("ndcg_at_10", "recall_at_10")


def default_dims(full: int) -> list[int]:
    """The model's full size, half of it, 256 and 128: those from 1 to `full`, largest first."""
    return sorted({d for d in (full, full // 2, 256, 128) if 1 <= d <= full}, reverse=True)


def check_dims(dims: list[int], full: int, flag: str = "--dims") -> list[int]:
    """`dims` without repeats, in order; each must be from 1 to the full size `full`."""
    bad = [d for d in dims if not 1 <= d <= full]
    if bad:
        raise ValueError(f"{flag} {' '.join(map(str, bad))}: each size must be from 1 to {full} (the embedding size)")
    return list(dict.fromkeys(dims))


@dataclass
class RetrievalSet:
    """A retrieval task's sample, embedded: query ids, document ids, their judgements and embeddings (row i of
    `query_emb` is query `qids[i]`, row j of `doc_emb` document `doc_ids[j]`)."""

    qids: list[str]
    doc_ids: list[str]
    qrels: dict[str, dict[str, int]]
    query_emb: np.ndarray
    doc_emb: np.ndarray

    def scores(self, idx: np.ndarray, val: np.ndarray) -> dict[str, Any]:
        """mteb's retrieval metrics of a ranking: `idx[i]` the document rows ranked for query i, `val[i]` their
        scores, best first."""
        from mteb._evaluators.retrieval_metrics import calculate_retrieval_scores

        ids = self.doc_ids
        run = {q: {ids[j]: float(s) for j, s in zip(idx[i], val[i], strict=True)} for i, q in enumerate(self.qids)}
        if missing := sorted(set(self.qrels) - set(run)):  # mteb averages over the queries ranked, not the judged
            raise ValueError(f"judged queries without a ranking: {missing[:5]}")
        result = calculate_retrieval_scores(run, self.qrels, k_values=(10,))
        return {
            "ndcg_at_10": result.ndcg["NDCG@10"],
            "recall_at_10": result.recall["Recall@10"],
            "num_queries": len(self.qids),
            "num_documents": len(self.doc_ids),
        }


def retrieval_sample(embedder: Embedder, data: Path, instruction: str) -> RetrievalSet:
    """The battery's sample of `RETRIEVAL` (its mteb task's queries, corpus and judgements), embedded: queries
    with the instruction, documents without, as the battery embeds them."""
    task, split = LOCAL_TASKS[RETRIEVAL]
    part = local_task(task, data, [split], *DEV_BATTERY[RETRIEVAL]).dataset["default"][split]
    queries, corpus = part["queries"], part["corpus"]
    doc_emb = embedder.embed(list(corpus["text"]), None, desc=f"{task} corpus")
    query_emb = embedder.embed(list(queries["text"]), instruction, desc=f"{task} queries")
    return RetrievalSet(list(queries["id"]), list(corpus["id"]), part["relevant_docs"], query_emb, doc_emb)


def top_k(query_emb: np.ndarray, doc_emb: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and cosine scores of the k most similar documents per query, best first (ties: the earlier one)."""
    sims = normalize(query_emb) @ normalize(doc_emb).T
    idx = best(sims, k)
    return idx, np.take_along_axis(sims, idx, axis=1)


def bytes_per_vector(precision: str, dim: int) -> int:
    """Bytes of one `dim`-dimensional vector: 4 a dimension (float32), 1 (int8), 1 a bit, whole bytes (ubinary)."""
    return {"float32": 4 * dim, "int8": dim, "ubinary": -(-dim // 8)}[precision]


def shorter(
    base: Embedder, dims: list[int], tasks: list[str], data: Path, instructions: dict[str, str]
) -> tuple[list[dict[str, Any]], int]:
    """The battery's main score of each task at each size (rows of `summary_rows` with `dims` and `bytes`), and
    how many embedding requests the model ran (the rest came from the cache)."""
    rows, forwards = [], 0
    for dim in dims:
        embedder = Embedder(
            base.model,
            base.model_id,
            cache_dir=base.cache.folder,
            dtype=base.dtype,
            batch_size=base.batch_size,
            show_progress_bar=base.show_progress_bar,
            truncate_dim=dim,
        )
        results = evaluate(embedder, tasks, data, None, instructions, model_name=str(dim), task_limits=DEV_BATTERY)
        forwards += embedder.encode_calls
        rows += [{"dims": dim, "bytes": bytes_per_vector("float32", dim), **row} for row in summary_rows(results)]
        scores = "  ".join(f"{r['task']} {100 * r['score']:.2f}" for r in rows[-len(tasks) :])
        print(f"{dim} dims: {scores}", file=sys.stderr, flush=True)
    return rows, forwards


def quantize(docs: np.ndarray, precision: str) -> tuple[np.ndarray, np.ndarray | None]:
    """`quantize_embeddings` of the documents, and the int8 ranges (per-dimension min and max over these documents,
    the calibration set; None for other precisions)."""
    from sentence_transformers import quantize_embeddings

    ranges = np.vstack((docs.min(0), docs.max(0))) if precision == "int8" else None
    return quantize_embeddings(docs, precision, ranges=ranges), ranges


def dequantize(quantized: np.ndarray, precision: str, ranges: np.ndarray | None, dim: int) -> np.ndarray:
    """What sentence-transformers rescores against: int8 mapped back onto the ranges (each bucket's low end), or a
    ubinary vector's bits as 0/1 (the padding bits cut off)."""
    if precision == "ubinary":
        return np.unpackbits(quantized, axis=-1)[:, :dim].astype(np.float64)
    assert ranges is not None
    ranges = ranges.astype(np.float32)
    steps = (ranges[1] - ranges[0]) / 255
    steps = np.where(steps == 0, 1, steps)
    return (quantized.astype(np.float64) + 128) * steps + ranges[0]


def first_stage(query: np.ndarray, docs: np.ndarray, precision: str, ranges: np.ndarray | None) -> np.ndarray:
    """Similarity (higher: closer) of each quantized query to each quantized document: int8 inner product, or
    minus the Hamming distance."""
    from sentence_transformers import quantize_embeddings

    q = quantize_embeddings(query, precision, ranges=ranges)
    if precision == "int8":  # exact in float64: |sum| <= 128 * 128 * dim
        return q.astype(np.float64) @ docs.astype(np.float64).T
    qb, db = np.unpackbits(q, axis=-1).astype(np.float64), np.unpackbits(docs, axis=-1).astype(np.float64)
    return 2 * qb @ db.T - qb.sum(1, keepdims=True) - db.sum(1)


def best(scores: np.ndarray, k: int) -> np.ndarray:
    """Columns of the k highest scores per row, best first; ties go to the lower column."""
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]


def quantized_search(
    query: np.ndarray, docs: np.ndarray, precision: str, k: int, rescore_multiplier: int, rescore: bool
) -> tuple[np.ndarray, np.ndarray]:
    """(document rows, scores) of the `k` best documents per query, best first, for unit-length float32 `query`
    and `docs` with the documents stored at `precision` (module docstring)."""
    if precision == "float32":
        return top_k(query, docs, k)
    stored, ranges = quantize(docs, precision)
    first = first_stage(query, stored, precision, ranges)
    candidates = best(first, k * rescore_multiplier if rescore else k)
    if not rescore:
        return candidates, np.take_along_axis(first, candidates, axis=1)
    rescored = np.take_along_axis(query @ dequantize(stored, precision, ranges, docs.shape[1]).T, candidates, axis=1)
    order = best(rescored, k)
    return np.take_along_axis(candidates, order, axis=1), np.take_along_axis(rescored, order, axis=1)


def smaller(sample: RetrievalSet, k: int, rescore_multiplier: int, dims: list[int]) -> list[dict[str, Any]]:
    """One row per size of `dims` (the first k dimensions, renormalised) and precision (and, quantized, without
    and with rescoring): bytes per vector and the metrics."""
    rows = []
    for dim, precision in ((dim, p) for dim in dims for p in PRECISIONS):
        query, docs = normalize(sample.query_emb[:, :dim]), normalize(sample.doc_emb[:, :dim])
        for rescore in (False,) if precision == "float32" else (False, True):
            idx, val = quantized_search(query, docs, precision, k, rescore_multiplier, rescore)
            scores = sample.scores(idx, val)
            rows.append(
                {
                    "dims": dim,
                    "precision": precision,
                    "bytes": bytes_per_vector(precision, dim),
                    "rescore": rescore,
                    "candidates": min(len(docs), k * rescore_multiplier if rescore else k),
                    **{m: scores[m] for m in METRICS},
                    "num_queries": scores["num_queries"],
                    "num_documents": scores["num_documents"],
                }
            )
    return rows


def markdown(result: dict[str, Any]) -> str:
    """Both tables, each with what made its numbers."""
    full, short = result["embedding_dim"], result["shorter"]
    lines = [
        f"Model `{result['model']}` ({result['dtype']} forward, {full} dimensions); data `{result['data']}`, the "
        "dev battery's samples (`evaluation.tasks.DEV_BATTERY`, seed 0).",
        f"Command: `{result['command']}`",
        "",
        "**Shorter vectors**: the first k dimensions of the full-size embedding (embedded once), scored by cosine, "
        "as `encode(truncate_dim=k)` and the server's `dimensions` give them. Scores x100.",
        "",
    ]
    tasks = list(dict.fromkeys(r["task"] for r in short))
    head = {r["task"]: f"{r['task']} {r['split']} {r['metric']} (n={r['n']})" for r in short}
    lines.append("| dims | float32 bytes | " + " | ".join(head[t] for t in tasks) + " |")
    lines.append("|---|---|" + "---|" * len(tasks))
    for dim in result["dims"]:
        cells = {r["task"]: f"{100 * r['score']:.2f}" for r in short if r["dims"] == dim}
        name = f"{dim} (full)" if dim == full else str(dim)
        lines.append(f"| {name} | {4 * dim} | " + " | ".join(cells[t] for t in tasks) + " |")
    rows = result["smaller"]
    s = result["search"]
    lines += [
        "",
        f"**Smaller vectors**: SciFact {rows[0]['num_queries']} queries against {rows[0]['num_documents']} "
        f"documents, the first `dims` dimensions at unit length; documents quantized with `quantize_embeddings` "
        "(int8 ranges from "
        f"these documents), queries float32; the first stage keeps the top {s['top_k']} by int8 inner product or "
        f"Hamming distance, or the top {s['rescore_multiplier']} x {s['top_k']} to rescore with the float32 "
        "query against the dequantized int8 / unpacked bits. Scores x100.",
        "",
        "| dims | precision | bytes / vector | rescored | candidates | nDCG@10 | recall@10 |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        rescored = "-" if r["precision"] == "float32" else ("yes" if r["rescore"] else "no")
        lines.append(
            f"| {r['dims']} | {r['precision']} | {r['bytes']} | {rescored} | {r['candidates']} "
            f"| {100 * r['ndcg_at_10']:.2f} | {100 * r['recall_at_10']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def summarize(results: list[dict[str, Any]]) -> str:
    """Both tables as mean ± sample std over several runs' JSON (seeds of one recipe), the worst run in brackets;
    the runs must hold the same rows."""
    cells: dict[str, dict[tuple, list[float]]] = {"shorter": {}, "smaller": {}}
    for result in results:
        for row in result["shorter"]:
            cells["shorter"].setdefault((row["dims"], row["task"]), []).append(row["score"])
        for row in result["smaller"]:
            key = (row["dims"], row["precision"], row["rescore"], row["bytes"])
            cells["smaller"].setdefault(key, []).append(row["ndcg_at_10"])
    if any(len(v) != len(results) for table in cells.values() for v in table.values()):
        raise ValueError("the runs do not hold the same rows (dims, tasks, precisions): summarize like with like")

    def cell(values: list[float]) -> str:
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        return f"{100 * statistics.mean(values):.2f} ± {100 * std:.2f} ({100 * min(values):.2f})"

    tasks = list(dict.fromkeys(task for _, task in cells["shorter"]))
    lines = [
        f"{len(results)} runs: " + ", ".join(r["model"] for r in results),
        "",
        "| dims | " + " | ".join(tasks) + " |",
    ]
    lines.append("|---|" + "---|" * len(tasks))
    for dim in dict.fromkeys(dim for dim, _ in cells["shorter"]):
        lines.append(f"| {dim} | " + " | ".join(cell(cells["shorter"][dim, t]) for t in tasks) + " |")
    lines += ["", "| dims | precision | bytes / vector | rescored | SciFact nDCG@10 |", "|---|---|---|---|---|"]
    for (dim, precision, rescore, size), values in cells["smaller"].items():
        rescored = "-" if precision == "float32" else ("yes" if rescore else "no")
        lines.append(f"| {dim} | {precision} | {size} | {rescored} | {cell(values)} |")
    return "\n".join(lines) + "\n"


def model_name(folder: str | Path) -> str:
    """The folder's name, or its parent's for a training run's `<run>/model`."""
    path = Path(folder).resolve()
    return path.parent.name if path.name == "model" else path.name


def main(argv: list[str] | None = None) -> dict[str, Any]:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.vectors", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", help="Causal2Vec checkpoint folder or SentenceTransformer folder")
    parser.add_argument("--summarize", type=Path, nargs="+", help="instead: mean ± std over these runs' JSON outputs")
    parser.add_argument("--dims", type=int, nargs="+", help="embedding sizes (default: full, half, 256, 128)")
    parser.add_argument(
        "--quantize-dims", type=int, nargs="+", help="sizes of the SciFact precision rows (default: full, half)"
    )
    parser.add_argument("--tasks", nargs="+", choices=list(DEV_BATTERY), default=list(DEV_BATTERY))
    parser.add_argument("--dtype", default="bf16", choices=["fp32", "bf16", "fp16"], help="forward dtype (bf16)")
    parser.add_argument("--top-k", type=int, default=10, help="documents kept per query (10)")
    parser.add_argument("--rescore-multiplier", type=int, default=4, help="candidates to rescore: this x top-k (4)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help=f"data root (default {DEFAULT_DATA})")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="embedding cache folder")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--output", type=Path, help="JSON file (default runs/vectors/<model name>.json)")
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    args = parser.parse_args(argv)
    if args.summarize:
        try:
            print(summarize([json.loads(path.read_text()) for path in args.summarize]))
        except (OSError, ValueError, KeyError) as err:
            parser.error(f"--summarize: {err}")
        return {}
    if not args.model:
        parser.error("--model is required (or --summarize)")
    if args.top_k < 1 or args.rescore_multiplier < 1:
        parser.error("--top-k and --rescore-multiplier must be at least 1")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    from causal2vec.instructions import load_instructions

    base = Embedder.from_path(args.model, cache_dir=args.cache, dtype=args.dtype, batch_size=args.batch_size)
    full = base.embedding_dim
    if full is None:
        parser.error(f"{args.model}: the model does not say its embedding size")
    try:
        dims = check_dims(args.dims, full) if args.dims else default_dims(full)
        quantize_dims = (
            check_dims(args.quantize_dims, full, "--quantize-dims") if args.quantize_dims else [full, full // 2]
        )
    except ValueError as err:
        parser.error(str(err))
    instructions = load_instructions()
    tasks = list(dict.fromkeys(args.tasks))
    short, forwards = shorter(base, dims, tasks, args.data, instructions)
    sample = retrieval_sample(base, args.data, instructions[RETRIEVAL])
    result = {
        "command": shlex.join(["python", "-m", "benchmarks.vectors", *argv]),
        "model": str(args.model),
        "dtype": args.dtype,
        "data": str(args.data),
        "embedding_dim": full,
        "dims": dims,
        "samples": {
            t: dict(zip(("limit", "corpus_limit"), DEV_BATTERY[t], strict=True))
            for t in dict.fromkeys([*tasks, RETRIEVAL])
        },
        "search": {"top_k": args.top_k, "rescore_multiplier": args.rescore_multiplier, "task": RETRIEVAL},
        "shorter": short,
        "smaller": smaller(sample, args.top_k, args.rescore_multiplier, quantize_dims),
        "forwards": forwards + base.encode_calls,  # embedding requests the model ran (not served by the cache)
    }
    print(markdown(result))
    output = args.output or REPO_ROOT / "runs" / "vectors" / f"{model_name(args.model)}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {output}")
    return result


if __name__ == "__main__":
    main()
