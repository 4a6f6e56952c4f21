"""Command line: `python -m train init|fit|bench ...`."""

from __future__ import annotations

import argparse
import json
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("init", help="assemble an untrained Causal2Vec checkpoint (default: SmolLM2 + MiniLM)")
    p.add_argument("--output", required=True, help="folder to write (must be empty, or pass --overwrite / --reuse)")
    p.add_argument(
        "--config",
        help="build what this train config starts from (YAML file, or a name in train/configs/: e.g. default); "
        "without it, the default parts with Causal2VecConfig's own defaults",
    )
    p.add_argument(
        "--decoder",
        help="causal LM folder, or an offline part by name: smollm2-135m (the default), gemma3-270m (causal2vec.parts)",
    )
    p.add_argument("--gguf-file", help="GGUF file name inside --decoder, if the decoder is a GGUF")
    p.add_argument("--encoder", help="path of a BERT-style encoder folder (default: all-MiniLM-L6-v2)")
    p.add_argument("--seed", type=int, help="seed of the connector's (and a random model's) draw (default: model.seed)")
    keep = p.add_mutually_exclusive_group()
    keep.add_argument("--overwrite", action="store_true", help="replace a non-empty --output folder")
    keep.add_argument(
        "--reuse",
        action="store_true",
        help="if --output already holds exactly what this would write (config, weights, code and tokenizer files), "
        "keep it and exit 0; "
        "if it holds another checkpoint, say what differs and exit 1",
    )
    add_set_argument(
        p, "a Causal2VecConfig field (--set pooling=eos), or a model.* key of the train config (--set model.seed=3)"
    )
    add_fit_parser(sub)
    add_bench_parser(sub)
    args = parser.parse_args(argv)
    if args.command == "fit":
        return run_fit(args)
    if args.command == "bench":
        from train.bench import main as bench_main

        return bench_main(args)
    if args.command == "init":
        return run_init(args, parser)
    return 0


def run_init(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from train.build import init
    from train.config import ConfigError, load_config, parse_overrides

    try:
        keys = [key for key, _ in parse_overrides(args.set)]  # its message names the user's --set as written
        pairs = zip(keys, args.set, strict=True)
        if outside := [key for key in keys if "." in key and not key.startswith("model.")]:
            raise ConfigError(f"init builds the model section only: --set {', '.join(outside)} does not apply")
        # a dotted key is the train config's own (model.seed, model.config.pooling), and so is document_prompt (as
        # train fit reads it: null is no prompt); any other bare key is a Causal2VecConfig field
        own = [("" if "." in k or k == "document_prompt" else "model.config.") + item.strip() for k, item in pairs]
        cfg = load_config(args.config, own)
    except ConfigError as err:
        parser.error(str(err))
    paths = {key: getattr(args, key) for key in ("decoder", "encoder", "gguf_file") if getattr(args, key) is not None}
    if paths and cfg.model.random:
        parser.error(f"--config {args.config} builds a random model: --decoder/--encoder/--gguf-file do not apply")
    if "decoder" in paths:  # a new decoder does not inherit the config's GGUF file name
        cfg.model.gguf_file = paths.get("gguf_file")
    for key, value in paths.items():  # paths as given, not YAML-parsed
        setattr(cfg.model, key, value)
    if args.seed is not None:
        cfg.model.seed = args.seed
    try:
        out, written = init(args.output, cfg, args.overwrite, args.reuse)
    except (FileExistsError, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"wrote {out}" if written else f"kept {out}: it is what this config builds")
    return 0


def add_set_argument(p: argparse.ArgumentParser, what: str) -> None:
    help_text = f"{what} (repeatable; values are YAML)"
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help=help_text)


def add_fit_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "fit", help="contrastive fine-tuning on SentenceTransformerTrainer (torchrun / accelerate launch too)"
    )
    p.add_argument("--config", default="default", help="YAML file, or a name in train/configs/ (default: default)")
    p.add_argument("--output", required=True, help="run folder: checkpoints, metrics.jsonl, model/ (the export)")
    p.add_argument("--resume", action="store_true", help="continue from the output folder's last checkpoint")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --output folder")
    add_set_argument(p, "override a config key, e.g. --set lr_decoder=1e-4 --set lora.r=8")


def run_fit(args: argparse.Namespace) -> int:
    import logging

    from train.config import ConfigError, load_config
    from train.data import DataError
    from train.fit import fit, summary
    from train.trainable import TrainingDiverged

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    try:
        cfg = load_config(args.config, args.set)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:
        folder = fit(cfg, args.output, resume=args.resume, overwrite=args.overwrite)
    except (TrainingDiverged, DataError, FileExistsError, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(json.dumps({"export": str(folder), **summary(args.output)}))
    return 0


def add_bench_parser(sub: argparse._SubParsersAction) -> None:
    from train.bench import SETTINGS  # standard library only at import

    p = sub.add_parser("bench", help="training throughput and peak memory: fp32/bf16, checkpointing, cached loss")
    p.add_argument("--config", default="default", help="model and data config (default: default)")
    p.add_argument("--steps", type=int, default=3, help="timed steps per setting (after one warm-up step)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--output", default="runs/bench.json", help="JSON file with the results")
    p.add_argument("--settings", nargs="+", choices=list(SETTINGS), help="default: all")
    p.add_argument("--only", help=argparse.SUPPRESS)  # internal: run one setting in this process
    add_set_argument(p, "override a config key")


if __name__ == "__main__":
    sys.exit(main())
