"""What each half of a Causal2Vec embedding carries: STS Spearman (x100) of the concatenation, of C's last state
alone, of EOS's alone, and of the contextual token as it enters the decoder (the connector's output), optionally
for several multiples of the connector's RMSNorm gain (`contextual_scale`, applied to the checkpoint's gain).

    python -m benchmarks.halves --model runs/init-scale1 --scales 1 4 16 64 256 1024 --pairs 300   # built at scale 1
    python -m benchmarks.halves --model runs/default/model              # a trained checkpoint as it is
    python -m benchmarks.halves --model runs/default/model --tasks stsb-dev trec mr   # through the dev battery

STS-B dev by default: settings are chosen on it. Pairs are taken evenly spaced from the file (`--pairs 0`: all).
`--tasks` instead runs dev-battery tasks (`evaluation run --battery`'s sizes, instructions and embedding cache) on
each view, so its concat scores are the battery's own and the halves come from the same cached embeddings.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from evaluation.cache import DEFAULT_CACHE
from evaluation.data import DEFAULT_DATA, read_sts
from evaluation.embedder import Embedder
from evaluation.metrics import sts_scores
from evaluation.run import evaluate
from evaluation.tasks import DEV_BATTERY

STSB_DEV = DEFAULT_DATA / "stsb" / "dev.tsv"


VIEWS = ("concat", "C", "EOS", "C input")


class ViewEmbedder(Embedder):
    """The battery's embedder for a Causal2Vec checkpoint, keeping one view of its embedding: the concatenation,
    C's or EOS's half of it (the same forward and cache entries), or C as it enters the decoder."""

    def __init__(self, base: Embedder, view: str):
        super().__init__(
            base.model, base.model_id, cache_dir=base.cache.folder, dtype=base.dtype, batch_size=base.batch_size
        )
        self.view, self.base = view, base

    def embed(self, texts: list[str], instruction: str | None = None, desc: str = "") -> np.ndarray:
        if self.view == "C input":  # the encoder never sees the prompt: it goes to the decoder only
            return np.concatenate([c_input(self.model, texts[i : i + 64]) for i in range(0, len(texts), 64)])
        return split_views(self.base.embed(texts, instruction, desc), self.model)[self.view]


def split_views(emb: np.ndarray, model) -> dict[str, np.ndarray]:
    """The concatenated embedding and each half of it: C's last state, then EOS's."""
    hidden = model.config.decoder.hidden_size
    return {"concat": emb, "C": emb[:, :hidden], "EOS": emb[:, hidden:]}


def c_input(model, texts: list[str]) -> np.ndarray:
    """The connector's output for `texts`: the contextual token as it enters the decoder."""
    batch = model.tokenizer(texts, return_tensors="pt")
    with torch.no_grad():
        return model.contextual_token(batch["encoder_input_ids"], batch["encoder_attention_mask"]).float().numpy()


def battery_views(base: Embedder, tasks: list[str], data: Path) -> dict[str, dict[str, float]]:
    """Main score x100 of each dev-battery task in `tasks` for each view of the checkpoint `base` embeds with."""
    from causal2vec.instructions import load_instructions

    instructions = load_instructions()
    out: dict[str, dict[str, float]] = {}
    for view in VIEWS:
        embedder = ViewEmbedder(base, view)
        for task in tasks:
            out.setdefault(view, {})[task] = battery_score(embedder, task, data, instructions)
        print(f"{view}: " + "  ".join(f"{t} {v:.2f}" for t, v in out[view].items()), flush=True)
    return out


def battery_score(embedder: Embedder, task: str, data: Path, instructions: dict[str, str]) -> float:
    """The battery's main score (x100) of `task` for `embedder`, at the battery's sizes."""
    return 100 * evaluate(embedder, [task], data, None, instructions, task_limits=DEV_BATTERY)[task]["score"]


def halves(model, pairs: tuple[list[str], list[str], list[float]], batch_size: int = 32) -> dict[str, float]:
    """Spearman x100 of the concatenation and of each half, and of the connector's output (C as input)."""
    a, b, gold = pairs
    out, other = (split_views(model.encode(t, batch_size=batch_size, dtype=torch.bfloat16), model) for t in (a, b))
    scores = {k: 100 * sts_scores(out[k], other[k], gold)["cosine_spearman"] for k in out}
    scores["C input"] = 100 * sts_scores(c_input(model, a), c_input(model, b), gold)["cosine_spearman"]
    return scores


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="Causal2Vec folder with pooling contextual_eos")
    parser.add_argument("--data", type=Path, default=STSB_DEV, help="STS TSV (sentence1, sentence2, score)")
    parser.add_argument("--pairs", type=int, default=300, help="evenly spaced pairs (0 = all)")
    parser.add_argument("--scales", type=float, nargs="+", default=[1.0], help="multiples of the checkpoint's gain")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tasks", nargs="+", choices=list(DEV_BATTERY), help="dev-battery tasks instead of --data")
    parser.add_argument("--eval-data", type=Path, default=DEFAULT_DATA, help="data root of the --tasks")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="embedding cache of --tasks")
    args = parser.parse_args(argv)

    from transformers import AutoModel

    torch.set_num_threads(args.threads)
    # --tasks: the battery's own loader, so that the cache keys (and cached embeddings) are `evaluation run`'s
    if args.tasks:
        base = Embedder.from_path(args.model, cache_dir=args.cache, dtype="bf16", show_progress_bar=False)
        model = base.model
    else:
        model = AutoModel.from_pretrained(args.model, trust_remote_code=True).eval()
    if model.config.pooling != "contextual_eos":
        parser.error(f"{args.model} pools with {model.config.pooling!r}: halves need pooling contextual_eos")
    if args.tasks:
        if args.scales != [1.0]:
            parser.error("--tasks scores the checkpoint as it is: no --scales")
        results = battery_views(base, args.tasks, args.eval_data)
        print(json.dumps({"model": args.model, "results": results}))
        return results
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
