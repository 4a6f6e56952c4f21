"""Embeddings stay bit-equal (CPU, fp32) across refactors: tiny seeded checkpoints, built from random parts with
`build_random` and with `build_model` (the `from_parts` path, connector drawn from the seed), embedded as Causal2Vec
in several layouts and as each baseline, against `tests/data/reference_embeddings.json`.

The reference was made by `python tests/test_same_embeddings.py` on the code before issue 10's refactor (commit
0f10b6c, with its imports pointed at `evaluation.baselines` and `train.parts`). Bitwise equality holds for the
same torch build on the same CPU kernels (`torch_version` and `cpu_capability` in the file's metadata); elsewhere
float rounding in the kernels may differ, so the comparison is then to 1e-5 (still far below what any change to
the model or the baselines would move).

Issue 10 changed one random draw: `from_parts` now builds the model's frame on the meta device and draws only the
connector's weights (before, a full random decoder and encoder were drawn first, then overwritten). The from_parts
path therefore sets the connector's Linear weights from a seeded generator of its own before embedding (the same in
the reference), and compares the RMSNorm gain (measured from the decoder, not drawn) with the reference's
`parts_gain`. The file holds embeddings only, no weights: JSON (float32 values written as Python floats, which
read back bit-exactly), so no weight-format file is tracked.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from train.build import TINY_DECODER

REFERENCE = Path(__file__).with_name("data") / "reference_embeddings.json"
TEXTS = ["A man is playing a guitar on stage.", "The cat sleeps.", "x"]
LAYOUTS = {
    "default": {},
    "eos": {"pooling": "eos"},
    "mean": {"pooling": "mean"},
    "cls_before_text": {"encoder_pooling": "cls", "contextual_position": "before_text", "connector_norm": "none"},
}
BASELINE_NAMES = ("eos", "mean", "echo", "bidirectional", "incontext", "encoder")


def compute(tmp: Path) -> tuple[dict[str, torch.Tensor], float]:
    """The embeddings, and the from_parts model's connector RMSNorm gain."""
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    from causal2vec.baselines import build_baseline
    from causal2vec.parts import default_decoder_path, default_encoder_path
    from train.build import TINY_ENCODER, build_model, build_random

    torch.set_num_threads(1)
    out = {}
    query = "Instruct: Find it\nQuery: "
    for name, fields in LAYOUTS.items():
        model = build_random(seed=3, **fields).eval()
        out[f"random/{name}"] = torch.from_numpy(model.encode(TEXTS))
        out[f"random/{name}/query"] = torch.from_numpy(model.encode(TEXTS, prompt=query))
    model = build_random(seed=3)
    for name in BASELINE_NAMES:
        out[f"baseline/{name}"] = torch.from_numpy(build_baseline(name, model).encode(TEXTS, prompt=query))
    # the from_parts path: random parts saved as folders, assembled with a seeded connector
    torch.manual_seed(7)
    for side, fields, source in (
        ("decoder", TINY_DECODER, default_decoder_path()),
        ("encoder", TINY_ENCODER, default_encoder_path()),
    ):
        tokenizer = AutoTokenizer.from_pretrained(source)
        config = AutoConfig.for_model(**fields, vocab_size=len(tokenizer), pad_token_id=0)
        AutoModel.from_config(config).save_pretrained(tmp / side)
        tokenizer.save_pretrained(tmp / side)
    model = build_model(str(tmp / "decoder"), str(tmp / "encoder"), seed=5).eval()
    generator = torch.Generator().manual_seed(11)  # the connector's Linears, independent of how they were drawn
    with torch.no_grad():
        for layer in model.connector.layers:
            layer.weight.copy_(torch.randn(layer.weight.shape, generator=generator) * 0.02)
            layer.bias.copy_(torch.randn(layer.bias.shape, generator=generator) * 0.02)
    out["parts/default"] = torch.from_numpy(model.encode(TEXTS))
    return out, model.connector.norm.weight[0].item()


def test_embeddings_equal_the_reference(tmp_path):
    reference = json.loads(REFERENCE.read_text())
    meta = reference["metadata"]
    want = {k: torch.tensor(v, dtype=torch.float32) for k, v in reference["embeddings"].items()}
    got, gain = compute(tmp_path)
    assert sorted(got) == sorted(want)
    exact = meta["torch_version"] == torch.__version__ and meta["cpu_capability"] == cpu_capability()
    assert gain == float(meta["parts_gain"]) if exact else abs(gain - float(meta["parts_gain"])) < 1e-5 * gain
    for key, value in want.items():
        if exact:
            assert torch.equal(got[key], value), f"{key}: embeddings changed (max diff {diff(got[key], value)})"
        else:
            torch.testing.assert_close(got[key], value, atol=1e-5, rtol=0, msg=key)


def diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max()) if a.shape == b.shape else float("inf")


def cpu_capability() -> str:
    return torch.backends.cpu.get_cpu_capability()


if __name__ == "__main__":  # write the reference (only on code whose embeddings are known good)
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        tensors, gain = compute(Path(tmp))
    REFERENCE.parent.mkdir(exist_ok=True)
    meta = {"torch_version": torch.__version__, "cpu_capability": cpu_capability(), "parts_gain": repr(gain)}
    embeddings = {k: v.tolist() for k, v in sorted(tensors.items())}
    REFERENCE.write_text(json.dumps({"metadata": meta, "embeddings": embeddings}, indent=1) + "\n")
    print(f"wrote {REFERENCE}: {len(tensors)} tensors")
