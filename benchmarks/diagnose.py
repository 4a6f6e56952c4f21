"""`python -m benchmarks.diagnose`: how the Contextual token C behaves inside the decoder.

For a sample of STS-B sentences it reports what distinguishes a healthy Causal2Vec model from an attention-sink
collapse: the share of attention that later tokens pay to C's slot, the share of texts whose C gets a massive activation
(an attention-sink state, `MASSIVE` times a typical token's largest activation or more),
how alike C's final states are across texts (mean pairwise cosine), the share of the concatenated embedding's
squared norm that the C half holds, and the norm of C as it enters the decoder next to that of real tokens.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from evaluation.data import DEFAULT_DATA, read_sts

MASSIVE = 10.0  # C's largest activation this many times a typical later token's: an attention-sink activation


def _mean_offdiag_cosine(x: torch.Tensor) -> float:
    x = torch.nn.functional.normalize(x.float(), dim=-1)
    sim = x @ x.T
    n = sim.shape[0]
    return float((sim.sum() - sim.diagonal().sum()) / (n * (n - 1)))


@torch.inference_mode()
def diagnose(model: Any, texts: list[str], batch_size: int = 16) -> dict[str, float]:
    """C's statistics over `texts` (see the module docstring); runs the decoder with eager attention."""
    decoder = model.decoder
    previous = decoder.config._attn_implementation
    decoder.set_attn_implementation("eager")  # attention weights are only returned by eager attention
    model.eval()
    attn_to_c, c_states, eos_states, c_max, c_in, tok_in = [], [], [], [], [], []
    try:
        for i in range(0, len(texts), batch_size):
            batch = model.tokenizer(texts[i : i + batch_size], return_tensors="pt", padding_side="right")
            c = model.contextual_token(batch["encoder_input_ids"], batch["encoder_attention_mask"])
            embeds = decoder.get_input_embeddings()(batch["input_ids"])
            rows = torch.arange(len(c))
            cols = batch["contextual_index"]  # right padding: the index among real tokens is the column
            embeds[rows, cols] = c.to(embeds.dtype)
            mask = batch["attention_mask"]
            out = decoder(inputs_embeds=embeds, attention_mask=mask, output_attentions=True, output_hidden_states=True)
            real = mask.bool()
            after = real & (torch.arange(real.shape[1]) > cols.view(-1, 1))  # query positions that can see C
            for att in out.attentions:  # (batch, heads, query, key)
                to_c = att[rows, :, :, cols]  # (batch, heads, query)
                attn_to_c.append(float((to_c.mean(1) * after).sum() / after.sum().clamp(min=1)))
            # each token's largest |activation| over the inner layers: (batch, length)
            hidden = torch.stack(out.hidden_states[1:-1]).abs().amax(dim=(0, 3))
            typical = torch.stack([h[a].median() for h, a in zip(hidden, after, strict=True)])
            c_max.append(hidden[rows, cols] / typical)  # C's largest activation over a typical later token's
            last = out.last_hidden_state
            c_states.append(last[rows, cols])
            eos_states.append(last[rows, mask.sum(1) - 1])
            c_in.append(c.float().norm(dim=-1))
            tok_in.append(embeds.float().norm(dim=-1)[after])
    finally:
        decoder.set_attn_implementation(previous)
    c_last, eos_last = torch.cat(c_states).float(), torch.cat(eos_states).float()
    c_sq, eos_sq = c_last.pow(2).sum(-1), eos_last.pow(2).sum(-1)
    return {
        "attention_to_c": sum(attn_to_c) / len(attn_to_c),
        "c_massive_share": float((torch.cat(c_max) > MASSIVE).float().mean()),
        "c_final_cosine": _mean_offdiag_cosine(c_last),
        "eos_final_cosine": _mean_offdiag_cosine(eos_last),
        "c_norm_share": float((c_sq / (c_sq + eos_sq)).mean()),
        "c_input_norm": float(torch.cat(c_in).mean()),
        "token_input_norm": float(torch.cat(tok_in).mean()),
    }


def sample_texts(n: int, data_root: Path = DEFAULT_DATA) -> list[str]:
    """The first `n` distinct first sentences of STS-B dev."""
    return list(dict.fromkeys(read_sts(Path(data_root) / "stsb" / "dev.tsv").sentences1))[:n]


def main(argv: list[str] | None = None) -> dict[str, float]:
    import argparse

    from transformers import AutoModel

    parser = argparse.ArgumentParser(prog="python -m benchmarks.diagnose", description=__doc__)
    parser.add_argument("--model", required=True, help="Causal2Vec checkpoint folder")
    parser.add_argument("--n", type=int, default=64, help="STS-B dev sentences to look at")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help=f"data root (default {DEFAULT_DATA})")
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    model = AutoModel.from_pretrained(args.model, trust_remote_code=True)
    result = diagnose(model, sample_texts(args.n, args.data))
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
