"""`python -m embed --model DIR --input PATH --output DIR`: embed a corpus into parquet shards (`id`, `embedding`)
with a manifest; rerun the same command to resume (finished shards are kept, a half-written one never counts)."""

from __future__ import annotations

import argparse
import sys

from embed.embedder import DTYPES, PRECISIONS

EPILOG = """examples:
  python -m embed --model runs/default/model --input corpus.jsonl --output runs/corpus --prompt-name document
  python -m embed --model M --input data.parquet --output out --precision int8 --processes 2
  python -m embed --model M --input corpus.jsonl --output out --device cuda            # one process per GPU
  python -m embed --model M --input corpus.parquet --output out --ray --ray-address ray://head:10001 --device cuda
"""


def positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m embed", description=__doc__, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--model", required=True, metavar="DIR", help="checkpoint folder (or Hub id) loadable by SentenceTransformer"
    )
    p.add_argument(
        "--input",
        required=True,
        metavar="PATH",
        help="JSON-lines or parquet file, a folder of them, a save_to_disk folder or Hub id",
    )
    p.add_argument(
        "--output", required=True, metavar="DIR", help="folder for part-NNNNN.parquet shards and _manifest.json"
    )
    p.add_argument("--text-column", default="text", help="column (JSON field) of the texts (default: text)")
    p.add_argument("--id-column", default="id", help="column of the ids, strings or integers, unique (default: id)")
    p.add_argument("--split", default="train", help="split of a save_to_disk DatasetDict or a Hub dataset")
    p.add_argument(
        "--prompt-name", metavar="NAME", help="the model's named prompt for every text: query, document, ... (none)"
    )
    p.add_argument("--dtype", choices=DTYPES, default="fp32", help="weights' dtype (default fp32: exact)")
    p.add_argument("--batch-size", type=positive, default=32, metavar="N", help="texts per forward (default 32)")
    p.add_argument("--truncate-dim", type=positive, metavar="K", help="keep the first K dimensions (Matryoshka-style)")
    p.add_argument("--normalize", action="store_true", help="unit-length vectors (after --truncate-dim)")
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="float32",
        help="float32 (4 bytes a dim), int8 (1 byte a dim, ranges calibrated once), ubinary (1 bit a dim, packed)",
    )
    p.add_argument(
        "--calibration-rows",
        type=positive,
        default=1000,
        metavar="N",
        help="int8: the first N rows set the ranges (1000)",
    )
    p.add_argument(
        "--shard-size", type=positive, default=10_000, metavar="ROWS", help="rows per output shard (default 10000)"
    )
    p.add_argument(
        "--rows-per-call",
        type=positive,
        default=512,
        metavar="ROWS",
        help="rows per embedder call, length-sorted within (512)",
    )
    p.add_argument(
        "--processes", type=positive, metavar="N", help="worker processes (Ray actors): default 1, or the GPU count"
    )
    p.add_argument(
        "--threads", type=positive, metavar="N", help="torch CPU threads per process (default: cores / processes)"
    )
    p.add_argument("--device", default="cpu", help="cpu (default), cuda (every visible GPU), or a torch device")
    p.add_argument("--ray", action="store_true", help="run on Ray Data (a local instance unless --ray-address)")
    p.add_argument(
        "--ray-address", metavar="ADDRESS", help="a running Ray cluster, e.g. ray://head:10001 or auto (implies --ray)"
    )
    p.add_argument("--overwrite", action="store_true", help="start over: delete this output's shards and manifest")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    if args.ray_address:
        args.ray = True
    if args.processes and args.processes > 1 and args.device not in ("cpu", "cuda"):
        p.error(f"--processes {args.processes} runs on cpu or cuda (one process per GPU), not {args.device!r}")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    from embed.corpus import CorpusError
    from embed.job import JobConfig, JobError, run_job

    options = vars(args)
    progress = not options.pop("no_progress")
    config = JobConfig(**options, progress=progress)
    try:
        result = run_job(config)
    except (CorpusError, JobError) as e:
        sys.exit(f"python -m embed: error: {e}")
    except KeyboardInterrupt:
        sys.exit(f"python -m embed: interrupted; finished shards are kept in {args.output}: rerun to resume")
    print(
        f"{result.rows} rows in {config.output}: embedded {result.rows_embedded} in {result.seconds:.1f} s "
        f"({result.texts_per_s:.1f} texts/s), {result.shards_written} shards written, {result.shards_kept} kept",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
