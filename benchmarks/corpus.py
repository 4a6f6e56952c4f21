"""Throughput of the corpus job (`python -m embed`): 1 process, 2 processes (each with its share of the cores) and
Ray Data with 2 actors on the same cores; prints texts/s of each, Ray / plain-2 and 2 / 1, and checks that every run
wrote the same vectors.

python -m benchmarks.corpus --model runs/default-init --rows 4000

Each run is a fresh `python -m embed` process; its texts/s is the manifest's: rows embedded over the time from
starting the workers (their model loads included; not Ray's own start-up, done before) to the last shard written.
Take enough rows that the workers' start-up (seconds) is small beside the embedding.
The corpus is STS-B's unique sentences (train, dev, test) from ../shared/data, or generated sentences without it.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from causal2vec import SHARED_DATA

STSB = SHARED_DATA / "eval" / "stsb"
RUNS = ("1", "2", "ray")


def corpus_texts(rows: int) -> tuple[list[str], str]:
    """`rows` texts: STS-B's unique sentences in file order (repeated if more are asked for), else generated ones."""
    texts: list[str] = []
    for split in ("train", "dev", "test"):
        path = STSB / f"{split}.tsv"
        if path.is_file():
            with path.open(encoding="utf-8", newline="") as f:
                for row in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE):
                    texts += [row["sentence1"], row["sentence2"]]
    texts = list(dict.fromkeys(texts))
    source = f"STS-B sentences ({STSB})"
    if not texts:
        rng = np.random.default_rng(0)
        words = "the a cat dog market rose fell sharply light energy plant stored on while after man plays".split()
        texts = [" ".join(rng.choice(words, size=int(rng.integers(4, 24)))) for _ in range(rows)]
        source = "generated sentences (no ../shared/data)"
    return [texts[i % len(texts)] for i in range(rows)], source


def run_job(name: str, args: argparse.Namespace, corpus: Path, output: Path) -> dict[str, Any]:
    """One fresh `python -m embed` run; its manifest's record of the run."""
    share = max(1, args.cores // 2)
    options = {
        "1": ["--processes", "1", "--threads", str(args.cores)],
        "2": ["--processes", "2", "--threads", str(share)],
        "ray": ["--ray", "--processes", "2", "--threads", str(share)],
    }[name]
    cmd = [sys.executable, "-m", "embed", "--model", args.model, "--input", str(corpus), "--output", str(output)]
    cmd += ["--batch-size", str(args.batch_size), "--rows-per-call", str(args.rows_per_call), "--dtype", args.dtype]
    cmd += ["--shard-size", str(args.shard_size), "--overwrite", "--no-progress", *options]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    run = json.loads((output / "_manifest.json").read_text())["runs"][-1]
    return {**run, "texts_per_s": run["rows_embedded"] / run["seconds"]}


def vectors(output: Path) -> np.ndarray:
    import pyarrow.parquet as pq

    return np.stack(pq.read_table(output).column("embedding").to_numpy(zero_copy_only=False))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="checkpoint folder")
    parser.add_argument("--rows", type=int, default=4000, help="texts in the corpus (default 4000)")
    parser.add_argument("--runs", nargs="+", choices=RUNS, default=list(RUNS), help="which runs (default all)")
    parser.add_argument("--repeats", type=int, default=1, help="rounds of all runs, interleaved (default 1)")
    parser.add_argument("--cores", type=int, default=len(os.sched_getaffinity(0)), help="cores to share out")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rows-per-call", type=int, default=256)
    parser.add_argument("--shard-size", type=int, default=500)
    parser.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument("--workdir", type=Path, help="corpus and outputs here, kept (default: a temp folder)")
    parser.add_argument("--output", type=Path, help="also write the results as JSON here")
    args = parser.parse_args(argv)

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="corpus-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    texts, source = corpus_texts(args.rows)
    corpus = workdir / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(texts)))
    print(f"{len(texts)} texts from {source}; {args.cores} cores; batch {args.batch_size}, {args.dtype}")
    results: dict[str, Any] = {"model": args.model, "rows": len(texts), "cores": args.cores, "runs": {}}
    try:
        for repeat in range(args.repeats):
            for name in args.runs:
                run = run_job(name, args, corpus, workdir / f"out-{name}")
                results["runs"].setdefault(name, []).append(run)
                print(
                    f"round {repeat + 1} {name:>3}: {run['processes']} x {run['threads']} threads, "
                    f"{run['seconds']:7.1f} s, {run['texts_per_s']:7.1f} texts/s",
                    flush=True,
                )
        best = {name: max(r["texts_per_s"] for r in runs) for name, runs in results["runs"].items()}
        results["texts_per_s"] = best
        reference = vectors(workdir / f"out-{args.runs[0]}")
        for name in args.runs[1:]:
            results.setdefault("max_abs_diff", {})[name] = float(
                np.abs(vectors(workdir / f"out-{name}") - reference).max()
            )
        print("texts/s (best of rounds): " + ", ".join(f"{n}: {v:.1f}" for n, v in best.items()))
        for key, (a, b), label in (
            ("ray_over_plain_2", ("ray", "2"), "Ray / plain 2 processes"),
            ("two_over_one", ("2", "1"), "2 processes / 1 process"),
        ):
            if a in best and b in best:
                results[key] = best[a] / best[b]
                print(f"{label}: {results[key]:.3f}")
        if "max_abs_diff" in results:
            print(f"max |difference| from the {args.runs[0]!r} run's vectors: {results['max_abs_diff']}")
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
