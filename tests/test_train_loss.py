"""InfoNCE (`train/loss.py`: sentence-transformers' ranking losses at 1 / temperature) against a hand-written
formula, the cached (GradCache) loss against the plain one, gradient checkpointing and what trains, on the tiny
random model wrapped as `fit` wraps it (`Causal2VecModule` in a SentenceTransformer)."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F
from conftest import TEXTS
from sentence_transformers import SentenceTransformer

from causal2vec.assemble import build_random
from train.config import ConfigError, load_config
from train.fit import Causal2VecModule
from train.loss import InfoNCE, check_prefix_terms
from train.trainable import LORA_TARGETS, lora_targets, lr_lambda, param_groups, set_trainable

pytestmark = pytest.mark.usefixtures("one_thread")

PROMPT = "Instruct: match the sentence\nQuery: "
# a batch as the trainer's columns hold it: queries (given PROMPT), their positives, two columns of hard negatives
BATCH = {
    "queries": TEXTS[:4],
    "positives": TEXTS[1:5],
    "negatives": [
        ["an unrelated document about cooking", "another negative", "a third one", "rain is expected tomorrow"],
        ["the museum opens at nine", "a red bicycle", "prices of houses keep rising", "he sings in a choir"],
    ],
}


def columns(batch: dict[str, Any] = BATCH) -> list[list[str]]:
    """The batch's texts per column, in the loss's order: queries with their prompt, positives, negatives."""
    return [[PROMPT + q for q in batch["queries"]], batch["positives"], *batch["negatives"]]


def features(st: SentenceTransformer, batch: dict[str, Any] = BATCH) -> list[dict[str, Any]]:
    """The loss's input, one feature dict per column, tokenized by the input module as the trainer does."""
    return [st[0].preprocess(column) for column in columns(batch)]


def wrap(model: torch.nn.Module) -> SentenceTransformer:
    """`model` as `fit` trains it: the one input module of a SentenceTransformer."""
    return SentenceTransformer(modules=[Causal2VecModule(model)], device="cpu")


def info_nce(st: SentenceTransformer, **overrides: Any) -> InfoNCE:
    """The training loss of the tiny config with `overrides` (temperature 0.05)."""
    return InfoNCE(st, load_config("tiny", [f"{k}={v}" for k, v in overrides.items()]))


def reference(q: torch.Tensor, docs: list[torch.Tensor], temperature: float) -> torch.Tensor:
    """InfoNCE written out: query i's cosine with every document (all positives, then all hard negatives) over
    `temperature`; its own positive i is the class; averaged over the queries."""
    candidates = torch.cat(docs)
    losses = []
    for i in range(len(q)):
        sims = torch.stack([F.cosine_similarity(q[i], d, dim=0) for d in candidates]) / temperature
        losses.append(torch.logsumexp(sims, 0) - sims[i])
    return torch.stack(losses).mean()


def reference_with_halves(emb: list[torch.Tensor], temperature: float, weight: float) -> torch.Tensor:
    """`reference` on the whole vectors plus `weight` times the mean of `reference` on each half alone."""
    half = emb[0].shape[1] // 2
    parts = [[e[:, s] for e in emb] for s in (slice(0, half), slice(half, None))]
    halves = [reference(p[0], p[1:], temperature) for p in parts]
    return reference(emb[0], emb[1:], temperature) + weight * (halves[0] + halves[1]) / 2


def embed(model: torch.nn.Module, batch: dict[str, Any] = BATCH) -> list[torch.Tensor]:
    """Each column embedded by the model itself, in one forward per column (no sentence-transformers)."""
    return [model(**model.tokenizer(column, return_tensors="pt")).sentence_embedding for column in columns(batch)]


def random_embeddings(rows: int = 3, dim: int = 8) -> list[torch.Tensor]:
    """Queries, positives and two columns of hard negatives."""
    g = torch.Generator().manual_seed(0)
    return [torch.randn(rows, dim, generator=g) for _ in range(4)]


def test_info_nce_matches_the_formula(tiny):
    tiny.eval()
    st = wrap(tiny)
    q, p, n1, n2 = random_embeddings()
    expected = reference(q, [p, n1, n2], 0.05)
    torch.testing.assert_close(info_nce(st).inner.compute_loss_from_embeddings([q, p, n1, n2], None), expected)
    cached = info_nce(st, cached_chunk_size=2).inner
    torch.testing.assert_close(cached.calculate_loss([[q], [p], [n1], [n2]]), expected)
    sharp = info_nce(st, temperature=0.01).inner
    assert sharp.compute_loss_from_embeddings([p * 2, p, n1, n2], None) < 1e-3, "a query equal to its positive wins"
    # through the input module, as the trainer calls it: the formula on the model's vectors, and its gradients
    got = info_nce(st)(features(st), None)
    got.backward()
    want_grads = grads(tiny)
    tiny.zero_grad()
    emb = embed(tiny)
    want = reference(emb[0], emb[1:], 0.05)
    want.backward()
    torch.testing.assert_close(got.detach(), want.detach(), atol=1e-5, rtol=1e-5)
    assert_same_grads(want_grads, grads(tiny))
    tiny.zero_grad()


def test_half_losses_add_each_half_alone(tiny):
    tiny.eval()
    st = wrap(tiny)
    emb = random_embeddings()  # halves of 4 dimensions
    plain, with_halves = reference_with_halves(emb, 0.05, 0.0), reference_with_halves(emb, 0.05, 0.5)
    assert abs(with_halves - plain) > 1e-2, "the halves' term counts"
    cached = info_nce(st, cached_chunk_size=2, half_loss_weight=0.5).inner
    torch.testing.assert_close(cached.calculate_loss([[e] for e in emb]), with_halves)
    with torch.no_grad():  # the plain (uncached) loss adds the halves in InfoNCE.forward
        got = info_nce(st, half_loss_weight=0.5)(features(st), None)
        vectors = embed(tiny)  # contextual_eos: C's state, then EOS's
    torch.testing.assert_close(got, reference_with_halves(vectors, 0.05, 0.5), atol=1e-5, rtol=1e-5)
    assert abs(got - reference_with_halves(vectors, 0.05, 0.0)) > 1e-3


def test_half_losses_need_the_concatenated_pooling():
    cfg = load_config("tiny", ["half_loss_weight=1.0"])
    check_prefix_terms(cfg, "contextual_eos", 64)
    check_prefix_terms(load_config("tiny"), "eos", 64)  # no halves: any pooling
    with pytest.raises(ValueError, match="half_loss_weight=1.0 needs a Causal2Vec model with pooling contextual_eos"):
        check_prefix_terms(cfg, "eos", 64)
    with pytest.raises(ValueError, match="got baseline eos"):
        check_prefix_terms(load_config("tiny", ["half_loss_weight=1.0", "baseline=eos"]), "contextual_eos", 64)
    with pytest.raises(ValueError, match="half_loss_weight must be >= 0"):
        load_config("tiny", ["half_loss_weight=-1"])


@pytest.mark.parametrize("chunk", [0, 2])
def test_matryoshka_term_adds_each_prefix_renormalised(tiny, chunk):
    """`matryoshka_dims`: the loss of the whole vector plus that of each leading prefix, renormalised (the cosine
    renormalises), plain or cached; the same gradients either way; dims are checked against the vectors."""
    st = wrap(tiny.eval())
    with torch.no_grad():
        vectors = embed(tiny)
        got = info_nce(st, matryoshka_dims="[32,8]", cached_chunk_size=chunk)(features(st), None)
    dim = vectors[0].shape[1]
    expected = sum(reference(vectors[0][:, :d], [v[:, :d] for v in vectors[1:]], 0.05) for d in (dim, 32, 8))
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    assert abs(got - reference(vectors[0], vectors[1:], 0.05)) > 1e-2, "the prefixes count"
    with pytest.raises(ValueError, match=r"matryoshka_dims \[64, 4096\]: each must be below the embedding size \(64\)"):
        check_prefix_terms(load_config("tiny", ["matryoshka_dims=[32,64,4096]"]), "contextual_eos", 64)
    for bad, message in [
        ("matryoshka_dims=[0]", "matryoshka_dims must be positive"),
        ("matryoshka_dims=[8,8]", "matryoshka_dims repeats a value"),
        ("matryoshka_dims=[x]", r"matryoshka_dims\[0\] must be an integer"),
    ]:
        with pytest.raises(ConfigError, match=message):
            load_config("tiny", [bad])
    with pytest.raises(ConfigError, match="one prefix term at a time"):
        load_config("tiny", ["matryoshka_dims=[8]", "half_loss_weight=0.5"])


def grads(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def tiny_trainable(**overrides: Any) -> tuple[torch.nn.Module, Any]:
    from causal2vec.assemble import build_random

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


def step(model: torch.nn.Module, loss: InfoNCE, st: SentenceTransformer) -> tuple[torch.Tensor, int]:
    """One forward and backward of `loss` on BATCH: the loss and the decoder tokens it counted."""
    model.zero_grad()
    loss.tokens = 0
    value = loss(features(st), None)
    value.backward()
    return value.detach(), loss.tokens


@pytest.mark.parametrize("chunk", [1, 3, 64])
def test_cached_loss_matches_plain_loss(chunk):
    model, _ = tiny_trainable()
    model.eval()  # no dropout: one forward of the batch and chunked forwards must agree
    st = wrap(model)
    loss, tokens = step(model, info_nce(st), st)
    plain = grads(model)
    cached, cached_tokens = step(model, info_nce(st, cached_chunk_size=chunk), st)
    torch.testing.assert_close(cached, loss, atol=1e-5, rtol=1e-5)
    assert cached_tokens == tokens > 0 and loss > 0.1
    assert_same_grads(grads(model), plain)
    # the half losses too: the same through the cache
    loss, _ = step(model, info_nce(st, half_loss_weight=0.5), st)
    plain = grads(model)
    cached, _ = step(model, info_nce(st, half_loss_weight=0.5, cached_chunk_size=chunk), st)
    torch.testing.assert_close(cached, loss, atol=1e-5, rtol=1e-5)
    assert_same_grads(grads(model), plain)


def minibatch(feature: dict[str, Any], begin: int, end: int) -> dict[str, Any]:
    """Rows begin:end of one column's features, cut after their last decoder token, as GradCache cuts them (the
    encoder's tensors, of another width, keep theirs)."""
    width = int(feature["attention_mask"][begin:end].any(0).nonzero().max()) + 1
    decoder = ("input_ids", "attention_mask")
    return {k: v[begin:end, :width] if k in decoder else v[begin:end] for k, v in feature.items()}


def test_cached_loss_replays_dropout():
    """With dropout on, each chunk's re-forward must draw the masks of its first pass: the cached loss and its
    gradients are those of embedding column by column, chunk by chunk, from the same seed."""
    model, _ = tiny_trainable()
    model.train()
    st, chunk = wrap(model), 3  # chunks of 3 and 1 row
    torch.manual_seed(1)
    emb = []
    for column in features(st):
        rows = len(column["input_ids"])
        parts = [st(minibatch(column, b, min(b + chunk, rows)))["sentence_embedding"] for b in range(0, rows, chunk)]
        emb.append(torch.cat(parts))
    expected = reference(emb[0], emb[1:], 0.05)
    expected.backward()
    want = grads(model)
    cached = info_nce(st, cached_chunk_size=chunk)
    torch.manual_seed(1)
    loss, _ = step(model, cached, st)
    torch.testing.assert_close(loss, expected.detach(), atol=1e-5, rtol=1e-5)
    assert_same_grads(grads(model), want)
    torch.manual_seed(2)
    other, _ = step(model, cached, st)
    assert not torch.allclose(other, loss), "dropout is on, so another seed gives another loss"


def test_gradient_checkpointing_gives_the_same_gradients():
    model, _ = tiny_trainable()
    model.eval()
    st = wrap(model)
    step(model, info_nce(st), st)
    reference_grads = grads(model)
    model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    for m in model.modules():  # train mode for checkpointing, but no dropout
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    assert model.decoder.is_activation_checkpointing and model.encoder.is_activation_checkpointing
    step(model, info_nce(st), st)
    assert_same_grads(grads(model), reference_grads)


def test_bf16_autocast_step_runs():
    model, _ = tiny_trainable()
    st = wrap(model)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = info_nce(st)(features(st), None)
    loss.backward()
    assert torch.isfinite(loss) and all(torch.isfinite(g).all() for g in grads(model).values())
    assert len(grads(model)) > 10


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
    from causal2vec.assemble import build_random

    dec = {"qwen2": dict(model_type="qwen2", hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=4, num_key_value_heads=2),
           "gpt2": dict(model_type="gpt2", n_embd=32, n_layer=1, n_head=4)}[family]  # fmt: skip
    model = build_random(dec)
    cfg = load_config("tiny")
    set_trainable(model, cfg)
    lora = [n for n, p in model.named_parameters() if p.requires_grad and "lora_" in n]
    targets = {n.split(".lora_")[0].rsplit(".", 1)[-1] for n in lora}
    assert targets == set(LORA_TARGETS[family])
    st = wrap(model)
    loss = info_nce(st)(features(st), None)
    loss.backward()
    assert torch.isfinite(loss) and any("lora_" in name for name in grads(model))


def test_schedule_warms_up_then_decays():
    cfg = load_config("tiny", ["steps=10", "warmup_steps=2", "schedule=linear"])
    f = lr_lambda(cfg)
    values = [f(s) for s in range(11)]
    assert values[0] < values[1] < values[2] == 1.0 and values[10] == 0.0
    assert all(a >= b for a, b in zip(values[2:], values[3:], strict=False))
    cos = lr_lambda(load_config("tiny", ["steps=10", "warmup_steps=0"]))
    assert cos(0) == 1.0 and cos(5) == pytest.approx(0.5) and cos(10) == pytest.approx(0.0)


def test_cached_loss_keeps_the_encoders_tokens_when_both_sides_are_as_wide():
    """GradCache's mini-batches cut every tensor as wide as the decoder's attention mask after the mini-batch's last
    decoder token: where the encoder's inputs come out exactly as wide, the decoder gets one more padding column, so
    they are not cut (or the cached loss would embed other inputs than the plain one); the columns still merge into
    one forward for the plain loss, and the padding column changes no embedding."""
    from sentence_transformers.base.losses.merged_forward import merge_feature_batches

    model = build_random().eval()
    st = wrap(model)
    queries = ["Instruct: match\nQuery: a long row of letters", "Instruct: match\nQuery: letters with rings"]
    positives = ["aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "ÅÄÖ åäö ØÆ"]  # the encoder reads more of one, fewer of the other
    plain_batch = model.tokenizer(positives, return_tensors="pt")
    assert plain_batch["encoder_input_ids"].shape[1] == plain_batch["input_ids"].shape[1], "the case at stake"
    columns = [st[0].preprocess(column) for column in (queries, positives)]
    assert columns[1]["attention_mask"].shape[1] == columns[1]["encoder_ids"].shape[1] + 1
    assert merge_feature_batches(columns) is not None, "the plain loss embeds all columns in one forward"
    with torch.no_grad():
        torch.testing.assert_close(model(**columns[1]).sentence_embedding, model(**plain_batch).sentence_embedding)
        plain = info_nce(st)(columns, None)
        cached = info_nce(st, cached_chunk_size=1)([st[0].preprocess(c) for c in (queries, positives)], None)
    torch.testing.assert_close(cached, plain, atol=1e-5, rtol=1e-5)
