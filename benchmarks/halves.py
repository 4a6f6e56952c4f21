"""What each half of a Causal2Vec embedding carries: STS Spearman (x100) of the concatenation, of C's last state
alone, of EOS's alone, and of the contextual token as it enters the decoder (the connector's output), optionally
for several multiples of the connector's RMSNorm gain (`contextual_scale`, applied to the checkpoint's gain).

    python -m benchmarks.halves --model runs/default-init --scales 1 4 16 64 256 1024 --pairs 300
    python -m benchmarks.halves --model runs/default/model              # a trained checkpoint as it is

STS-B dev by default: settings are chosen on it. Pairs are taken evenly spaced from the file (`--pairs 0`: all).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from evaluation.data import read_sts
from evaluation.metrics import sts_scores

ROOT = Path(__file__).resolve().parent.parent
STSB_DEV = ROOT.parent / "shared" / "data" / "eval" / "stsb" / "dev.tsv"


def halves(model, pairs: tuple[list[str], list[str], list[float]], batch_size: int = 32) -> dict[str, float]:
    """Spearman x100 of the concatenation and of each half, and of the connector's output (C as input)."""
    a, b, gold = pairs
    emb = [model.encode(t, batch_size=batch_size, dtype=torch.bfloat16) for t in (a, b)]
    hidden = model.config.decoder.hidden_size
    out = {"concat": emb[0], "C": emb[0][:, :hidden], "EOS": emb[0][:, hidden:]}
    other = {"concat": emb[1], "C": emb[1][:, :hidden], "EOS": emb[1][:, hidden:]}
    scores = {k: 100 * sts_scores(out[k], other[k], gold)["cosine_spearman"] for k in out}

    def c_input(texts: list[str]) -> np.ndarray:
        batch = model.tokenizer(texts, return_tensors="pt")
        with torch.no_grad():
            return model.contextual_token(batch["encoder_input_ids"], batch["encoder_attention_mask"]).float().numpy()

    scores["C input"] = 100 * sts_scores(c_input(a), c_input(b), gold)["cosine_spearman"]
    return scores


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="Causal2Vec folder with pooling contextual_eos")
    parser.add_argument("--data", type=Path, default=STSB_DEV, help="STS TSV (sentence1, sentence2, score)")
    parser.add_argument("--pairs", type=int, default=300, help="evenly spaced pairs (0 = all)")
    parser.add_argument("--scales", type=float, nargs="+", default=[1.0], help="multiples of the checkpoint's gain")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)

    from transformers import AutoModel

    torch.set_num_threads(args.threads)
    model = AutoModel.from_pretrained(args.model, trust_remote_code=True).eval()
    if model.config.pooling != "contextual_eos":
        parser.error(f"{args.model} pools with {model.config.pooling!r}: halves need pooling contextual_eos")
    if model.connector.norm is None and args.scales != [1.0]:
        parser.error(f"{args.model} has no connector RMSNorm (connector_norm none): --scales needs its gain")
    sts = read_sts(args.data)
    step = max(1, len(sts.scores) // args.pairs) if args.pairs else 1
    keep = list(range(0, len(sts.scores), step))[: args.pairs or None]
    pairs = ([sts.sentences1[i] for i in keep], [sts.sentences2[i] for i in keep], [sts.scores[i] for i in keep])
    gain = None if model.connector.norm is None else model.connector.norm.weight.detach().clone()
    results = {}
    for scale in args.scales:
        if gain is not None:
            with torch.no_grad():
                model.connector.norm.weight.copy_(gain * scale)
        results[scale] = halves(model, pairs)
        print(f"x{scale:g}: " + "  ".join(f"{k} {v:.2f}" for k, v in results[scale].items()), flush=True)
    print(json.dumps({"model": args.model, "pairs": len(keep), "results": results}))
    return results


if __name__ == "__main__":
    main()
