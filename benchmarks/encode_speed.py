"""Throughput of `model.encode` on the STS-B test sentences: texts/s and tokens/s per dtype.

python -m benchmarks.encode_speed --model runs/default-init --dtypes fp32 bf16 --threads 2
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import torch

from causal2vec.dtypes import DTYPES
from evaluation.data import DEFAULT_DATA

STSB_TEST = DEFAULT_DATA / "stsb" / "test.tsv"


def stsb_sentences(path: Path) -> list[str]:
    with path.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    return list(dict.fromkeys(s for r in rows for s in (r["sentence1"], r["sentence2"])))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="Hub-ready Causal2Vec folder")
    parser.add_argument("--data", type=Path, default=STSB_TEST, help="STS TSV (sentence1, sentence2, score)")
    parser.add_argument("--dtypes", nargs="+", default=["fp32", "bf16"], choices=["bf16", "fp32"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--limit", type=int, default=0, help="use only the first N sentences (0 = all)")
    parser.add_argument("--output", type=Path, help="also write the results as JSON here")
    args = parser.parse_args(argv)

    from transformers import AutoModel

    torch.set_num_threads(args.threads)
    model = AutoModel.from_pretrained(args.model, trust_remote_code=True).eval()
    texts = stsb_sentences(args.data)[: args.limit or None]
    batch = model.tokenizer(texts, padding=False)  # count real tokens, not padding
    dec_tokens = sum(map(len, batch["input_ids"]))
    enc_tokens = sum(map(len, batch["encoder_input_ids"]))
    model.encode(texts[:64], batch_size=args.batch_size)  # warm-up
    results = {
        "model": str(args.model),
        "texts": len(texts),
        "decoder_tokens": dec_tokens,
        "encoder_tokens": enc_tokens,
        "threads": args.threads,
        "batch_size": args.batch_size,
        "runs": {},
    }
    print(f"{len(texts)} texts, {dec_tokens} decoder tokens, {enc_tokens} encoder tokens, {args.threads} threads")
    print(f"{'dtype':6} {'seconds':>8} {'texts/s':>8} {'dec tok/s':>10}")
    for name in args.dtypes:
        start = time.perf_counter()
        model.encode(texts, batch_size=args.batch_size, dtype=DTYPES[name])
        seconds = time.perf_counter() - start
        run = {"seconds": seconds, "texts_per_s": len(texts) / seconds, "decoder_tokens_per_s": dec_tokens / seconds}
        results["runs"][name] = run
        print(f"{name:6} {seconds:8.1f} {run['texts_per_s']:8.1f} {run['decoder_tokens_per_s']:10.0f}")
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
