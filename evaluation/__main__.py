"""Command line: `python -m evaluation run|mteb|compare ...`.

python -m evaluation run --model runs/default-init --tasks stsb trec --dtype bf16 --output runs/eval/default
python -m evaluation run --model runs/default-init --baseline echo --tasks stsb
python -m evaluation run --model runs/default/model --battery --dtype bf16 --truncate-dim 256   # first 256 dims
python -m evaluation mteb --model runs/default/model --tasks stsb scifact trec mr --output runs/mteb   # offline
python -m evaluation mteb --model runs/default/model --benchmark "MTEB(eng, v2)" --device cuda --dtype bf16
python -m evaluation compare runs/eval/default runs/eval/default-init-echo-fp32 --output runs/compare.md
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from causal2vec import REPO_ROOT
from evaluation.cache import DEFAULT_CACHE
from evaluation.data import DEFAULT_DATA


def main(argv: list[str] | None = None) -> int:
    from causal2vec.baselines import BASELINES
    from evaluation.tasks import DEFAULT_TASKS, DEV_BATTERY, LOCAL_TASKS

    parser = argparse.ArgumentParser(
        prog="python -m evaluation", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    common = argparse.ArgumentParser(add_help=False)  # what both evaluation commands take
    common.add_argument("--model", required=True, help="Causal2Vec checkpoint folder or SentenceTransformer folder")
    common.add_argument("--data", type=Path, default=DEFAULT_DATA, help=f"local tasks' data (default {DEFAULT_DATA})")
    common.add_argument("--dtype", default="fp32", choices=["fp32", "bf16", "fp16"])
    common.add_argument("--batch-size", type=int, default=32)
    common.add_argument("--card", action="store_true", help="the main scores into the checkpoint's card (model-index)")
    common.add_argument("--threads", type=int, help="torch CPU threads")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", parents=[common], help="evaluate a model on the local tasks (the battery's protocol)")
    p.add_argument("--baseline", choices=BASELINES, help="evaluate this baseline on the checkpoint's decoder/encoder")
    p.add_argument("--pooling", help="embed a Causal2Vec checkpoint with this pooling instead of its own (ablation)")
    p.add_argument("--tasks", nargs="+", default=list(DEFAULT_TASKS), choices=sorted(LOCAL_TASKS))
    p.add_argument("--battery", action="store_true", help="the dev battery: its tasks and samples (DEV_BATTERY)")
    p.add_argument("--output", type=Path, help="results folder (default runs/eval/<model>[-<baseline>]-<dtype>)")
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="embedding cache folder")
    p.add_argument("--no-cache", action="store_true", help="do not read or write the embedding cache")
    p.add_argument("--limit", type=int, help="seeded subsample: STS pairs, queries, classification examples")
    p.add_argument("--corpus-limit", type=int, help="retrieval corpus subsample (judged documents always kept)")
    p.add_argument("--no-instructions", action="store_true", help="embed every text without an instruction")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--truncate-dim", type=int, help="score the first K dimensions (as `encode(truncate_dim=K)`)")
    m = sub.add_parser("mteb", parents=[common], help="mteb's protocol: the local tasks offline, or mteb's tasks")
    m.add_argument("--tasks", nargs="+", help="stsb scifact trec mr: the local files (offline); others: mteb's task")
    m.add_argument("--benchmark", help='an mteb benchmark, e.g. "MTEB(eng, v2)" (its data from the HF cache / Hub)')
    m.add_argument("--output", type=Path, default=REPO_ROOT / "runs" / "mteb", help="mteb results folder")
    m.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: the model's)")
    m.add_argument("--overwrite", action="store_true", help="re-run tasks whose results are already in --output")
    c = sub.add_parser("compare", help="one markdown table of several run folders' summary.json")
    c.add_argument("runs", nargs="+", type=Path, help="folders written by `python -m evaluation run`")
    c.add_argument("--output", type=Path, help="also write the table to this markdown file")
    args = parser.parse_args(argv)
    if getattr(args, "threads", None):
        import torch

        torch.set_num_threads(args.threads)

    if args.command == "run":
        from evaluation.embedder import Embedder
        from evaluation.run import evaluate, summary_rows

        if args.card and args.truncate_dim is not None:
            parser.error("--card records the model's full-size scores; do not combine it with --truncate-dim")
        if args.battery and (args.limit or args.corpus_limit):
            parser.error("--battery sets each task's sample; do not combine it with --limit / --corpus-limit")
        tags = {"": args.baseline, "pooling=": args.pooling, "dim=": args.truncate_dim}
        tags = {k: v for k, v in tags.items() if v is not None}
        name = "-".join(x for x in (Path(args.model).resolve().name, args.baseline, args.dtype) if x)
        name += f"-{args.pooling}-pooling" if args.pooling else ""
        name += f"-dim{args.truncate_dim}" if args.truncate_dim is not None else ""
        output = args.output or REPO_ROOT / "runs" / "eval" / name
        embedder = Embedder.from_path(
            args.model,
            baseline=args.baseline,
            pooling=args.pooling,
            cache_dir=None if args.no_cache else args.cache,
            dtype=args.dtype,
            batch_size=args.batch_size,
            use_instructions=not args.no_instructions,
            truncate_dim=args.truncate_dim,
        )
        results = evaluate(
            embedder,
            list(DEV_BATTERY) if args.battery else args.tasks,
            args.data,
            output,
            limit=args.limit,
            corpus_limit=args.corpus_limit,
            seed=args.seed,
            model_name=str(args.model) + "".join(f" [{k}{v}]" for k, v in tags.items()),
            task_limits=DEV_BATTERY if args.battery else None,
        )
        rows = summary_rows(results)
        print(f"{(Path(output) / 'summary.md').read_text()}\n{json.dumps(rows)}\nwrote {output}")
        how = [args.dtype, "no instructions" if args.no_instructions else "instructions"]
        how += [f"`{args.baseline}` baseline"] if args.baseline else []
        how += [f"`{args.pooling}` pooling"] if args.pooling else []
        how += ["dev battery (evaluation.tasks.DEV_BATTERY)"] if args.battery else []
        how += [f"seeded subsample of {args.limit}"] if args.limit else []
        how += [f"corpus of {args.corpus_limit} (judged kept)"] if args.corpus_limit else []
    elif args.command == "mteb":
        import mteb

        from evaluation.mteb_model import Causal2VecMTEB
        from evaluation.run import result_rows, run_mteb
        from evaluation.tasks import resolve

        if not args.tasks and not args.benchmark:
            parser.error("pass --tasks and / or --benchmark")
        tasks = resolve(args.tasks or [], args.data, mteb_protocol=True, benchmark=args.benchmark)
        wrapper = Causal2VecMTEB(args.model, dtype=args.dtype, device=args.device, batch_size=args.batch_size)
        rows = result_rows(run_mteb(wrapper, tasks, args.output, args.batch_size, args.overwrite, progress=True), tasks)
        for r in rows:
            print(f"{r['task']}\t{r['split']}\t{r['metric']}\t{100 * r['score']:.2f}")
        print(f"wrote {args.output}")
        how = [f"mteb {mteb.__version__}", args.dtype]
    else:
        from evaluation.compare import compare

        print(compare(args.runs, args.output), end="")
        if args.output:
            print(f"wrote {args.output}")
        return 0
    if args.card:
        from evaluation.card import update_evaluation

        print(f"updated {update_evaluation(Path(args.model), rows, ', '.join(how))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
