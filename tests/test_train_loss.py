"""InfoNCE, the cached (GradCache) loss, gradient checkpointing and what trains, on the tiny random model."""

from __future__ import annotations

import contextlib

import pytest
import torch
import torch.nn.functional as F
from conftest import TEXTS

from train.config import load_config
from train.data import Batch
from train.loss import cached_step, contrastive_loss, info_nce, plain_step, step_function
from train.trainable import LORA_TARGETS, lora_targets, lr_lambda, param_groups, set_trainable

pytestmark = pytest.mark.usefixtures("one_thread")


def test_info_nce_matches_the_formula():
    g = torch.Generator().manual_seed(0)
    q, p, n = torch.randn(3, 8, generator=g), torch.randn(3, 8, generator=g), torch.randn(2, 8, generator=g)
    loss = info_nce(q, p, n, temperature=0.1)
    docs = torch.cat([p, n])
    expected = 0.0
    for i in range(3):
        sims = torch.stack([F.cosine_similarity(q[i], d, dim=0) for d in docs]) / 0.1
        expected += -(sims[i] - torch.logsumexp(sims, 0))
    torch.testing.assert_close(loss, expected / 3)
    assert info_nce(p * 2, p, n, 0.01) < 1e-3, "a query equal to its positive wins"


def test_half_losses_add_each_half_alone():
    g = torch.Generator().manual_seed(0)
    emb = torch.randn(7, 8, generator=g)  # 3 queries, 3 positives, 1 negative; halves of 4 dimensions
    plain = contrastive_loss(emb, 3, 3, 0.1)
    torch.testing.assert_close(plain, info_nce(emb[:3], emb[3:6], emb[6:], 0.1))
    halves = [info_nce(emb[:3, s], emb[3:6, s], emb[6:, s], 0.1) for s in (slice(0, 4), slice(4, 8))]
    torch.testing.assert_close(contrastive_loss(emb, 3, 3, 0.1, half_weight=0.5), plain + 0.25 * sum(halves))


def test_half_losses_need_the_concatenated_pooling():
    cfg = load_config("tiny", ["half_loss_weight=1.0"])
    step_function(cfg, "contextual_eos")
    with pytest.raises(ValueError, match="half_loss_weight=1.0 needs a Causal2Vec model with pooling contextual_eos"):
        step_function(cfg, "eos")
    with pytest.raises(ValueError, match="got baseline eos"):
        step_function(load_config("tiny", ["half_loss_weight=1.0", "baseline=eos"]), "contextual_eos")
    with pytest.raises(ValueError, match="half_loss_weight must be >= 0"):
        load_config("tiny", ["half_loss_weight=-1"])


def batch() -> Batch:
    prompt = "Instruct: match the sentence\nQuery: "
    return Batch(
        "t",
        [prompt + t for t in TEXTS[:4]],
        TEXTS[1:5],
        [["an unrelated document about cooking"], [], ["another negative", "a third one"], []],
    )


def grads(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def tiny_trainable(**overrides):
    from train.build import build_random

    cfg = load_config("tiny", [f"{k}={v}" for k, v in overrides.items()])
    model = build_random(cfg.model.decoder, cfg.model.encoder, **cfg.model.config)
    torch.manual_seed(0)
    set_trainable(model, cfg)
    with torch.no_grad():  # LoRA B starts at zero: make the adapters matter
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(std=0.1)
    return model, cfg


def assert_same_grads(a: dict, b: dict, atol: float = 1e-5) -> None:
    assert a.keys() == b.keys() and len(a) > 10
    for name in a:
        scale = max(1.0, b[name].abs().max().item())  # fp32 rounding grows with the gradient's size
        torch.testing.assert_close(a[name], b[name], atol=atol * scale, rtol=1e-4, msg=name)


@pytest.mark.parametrize("chunk", [1, 3, 64])
def test_cached_loss_matches_plain_loss(chunk):
    model, _ = tiny_trainable()
    model.eval()  # no dropout: one forward of the batch and chunked forwards must agree
    loss, tokens = plain_step(model, model.tokenizer, batch(), 0.05, contextlib.nullcontext)
    plain = grads(model)
    model.zero_grad()
    cached, cached_tokens = cached_step(model, model.tokenizer, batch(), 0.05, contextlib.nullcontext, chunk)
    torch.testing.assert_close(cached, loss, atol=1e-5, rtol=1e-5)
    assert cached_tokens == tokens and loss > 0.1
    assert_same_grads(grads(model), plain)
    model.zero_grad()  # the half losses too: the same through the cache
    loss, _ = plain_step(model, model.tokenizer, batch(), 0.05, contextlib.nullcontext, half_weight=0.5)
    plain = grads(model)
    model.zero_grad()
    cached, _ = cached_step(model, model.tokenizer, batch(), 0.05, contextlib.nullcontext, chunk, half_weight=0.5)
    torch.testing.assert_close(cached, loss, atol=1e-5, rtol=1e-5)
    assert_same_grads(grads(model), plain)


def test_cached_loss_replays_dropout():
    """With dropout on, each chunk's re-forward must draw the masks of its first pass."""
    model, _ = tiny_trainable()
    model.train()
    b, chunk = batch(), 4
    texts = b.queries + b.positives + b.flat_negatives
    torch.manual_seed(1)
    parts = []
    for i in range(0, len(texts), chunk):
        inputs = model.tokenizer(texts[i : i + chunk], return_tensors="pt")
        parts.append(model(**inputs).sentence_embedding)
    emb = torch.cat(parts)
    expected = info_nce(emb[:4], emb[4:8], emb[8:], 0.05)
    expected.backward()
    reference = grads(model)
    model.zero_grad()
    torch.manual_seed(1)
    loss, _ = cached_step(model, model.tokenizer, b, 0.05, contextlib.nullcontext, chunk)
    torch.testing.assert_close(loss, expected.detach())
    assert_same_grads(grads(model), reference)
    torch.manual_seed(2)
    model.zero_grad()
    other, _ = cached_step(model, model.tokenizer, b, 0.05, contextlib.nullcontext, chunk)
    assert not torch.allclose(other, loss), "dropout is on, so another seed gives another loss"


def test_gradient_checkpointing_gives_the_same_gradients():
    model, _ = tiny_trainable()
    model.eval()
    plain_step(model, model.tokenizer, batch(), 0.05, contextlib.nullcontext)
    reference = grads(model)
    model.zero_grad()
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    for m in model.modules():  # train mode for checkpointing, but no dropout
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    assert model.decoder.is_gradient_checkpointing and model.encoder.is_gradient_checkpointing
    plain_step(model, model.tokenizer, batch(), 0.05, contextlib.nullcontext)
    assert_same_grads(grads(model), reference)


def test_bf16_autocast_step_runs():
    model, _ = tiny_trainable()
    autocast = lambda: torch.autocast("cpu", dtype=torch.bfloat16)  # noqa: E731
    loss, _ = plain_step(model, model.tokenizer, batch(), 0.05, autocast)
    assert torch.isfinite(loss) and all(torch.isfinite(g).all() for g in grads(model).values())


def test_what_trains_and_learning_rates():
    model, cfg = tiny_trainable(lr_decoder=0.1, lr_connector=0.2, lr_encoder=0.3)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert any("lora_A" in n for n in trainable)
    assert not any(n.startswith("decoder.") and "lora_" not in n for n in trainable), "decoder base frozen"
    assert {n.split(".")[0] for n in trainable} == {"decoder", "connector", "encoder"}
    lrs = {g["name"]: g["lr"] for g in param_groups(model, cfg)}
    assert lrs == {"decoder": 0.1, "connector": 0.2, "encoder": 0.3}
    frozen, cfg = tiny_trainable(train_encoder="false")
    assert not any(p.requires_grad for p in frozen.encoder.parameters())
    assert {g["name"] for g in param_groups(frozen, cfg)} == {"decoder", "connector"}
    full, _ = tiny_trainable(**{"lora.r": 0})
    assert all(p.requires_grad for p in full.decoder.parameters())


def test_biases_and_norms_get_no_weight_decay():
    model, cfg = tiny_trainable(weight_decay=0.1, **{"lora.r": 0})
    groups = param_groups(model, cfg)
    names = {id(p): n for n, p in model.named_parameters()}
    grouped = [id(p) for g in groups for p in g["params"]]
    assert sorted(grouped) == sorted(id(p) for p in model.parameters() if p.requires_grad), "each param once"
    for g in groups:
        assert g["weight_decay"] == (0.1 if g["decay"] else 0.0)
        assert all((p.dim() >= 2) == g["decay"] for p in g["params"])
    no_decay = {names[id(p)] for g in groups if not g["decay"] for p in g["params"]}
    assert "connector.layers.0.bias" in no_decay and "decoder.layers.0.input_layernorm.weight" in no_decay
    assert any("LayerNorm.weight" in n for n in no_decay) and any(n.endswith(".bias") for n in no_decay)
    assert not any(n.endswith("proj.weight") or "word_embeddings" in n for n in no_decay)
    assert {(g["name"], g["decay"]) for g in groups} >= {("decoder", False), ("encoder", True), ("connector", False)}


def test_lora_target_defaults_per_family():
    for family in ("llama", "mistral", "qwen2", "qwen3", "gemma3_text"):
        assert "q_proj" in lora_targets(family, None) and "down_proj" in lora_targets(family, None)
    assert lora_targets("gpt2", None) == LORA_TARGETS["gpt2"]
    assert lora_targets("phi3", None) == ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"]
    assert lora_targets("somethingnew", None) == "all-linear"
    assert lora_targets("llama", ["q_proj"]) == ["q_proj"]


@pytest.mark.parametrize("family", ["qwen2", "gpt2"])
def test_lora_applies_to_other_decoder_families(family):
    from train.build import build_random

    dec = {"qwen2": dict(model_type="qwen2", hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=4, num_key_value_heads=2),
           "gpt2": dict(model_type="gpt2", n_embd=32, n_layer=1, n_head=4)}[family]  # fmt: skip
    model = build_random(dec)
    cfg = load_config("tiny")
    set_trainable(model, cfg)
    lora = [n for n, p in model.named_parameters() if p.requires_grad and "lora_" in n]
    targets = {n.split(".lora_")[0].rsplit(".", 1)[-1] for n in lora}
    assert targets == set(LORA_TARGETS[family])
    loss, _ = plain_step(model, model.tokenizer, batch(), 0.05, contextlib.nullcontext)
    assert torch.isfinite(loss)


def test_schedule_warms_up_then_decays():
    cfg = load_config("tiny", ["steps=10", "warmup_steps=2", "schedule=linear"])
    f = lr_lambda(cfg)
    values = [f(s) for s in range(11)]
    assert values[0] < values[1] < values[2] == 1.0 and values[10] == 0.0
    assert all(a >= b for a, b in zip(values[2:], values[3:], strict=False))
    cos = lr_lambda(load_config("tiny", ["steps=10", "warmup_steps=0"]))
    assert cos(0) == 1.0 and cos(5) == pytest.approx(0.5) and cos(10) == pytest.approx(0.0)
