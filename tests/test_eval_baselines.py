"""Baselines on a tiny random Causal2Vec model: interface, shared weights, invariances and pooling."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import DECODER_FAMILIES, TEXTS
from eval_fixtures import make_train_data

from causal2vec.assemble import build_random
from causal2vec.baselines import BASELINES, build_baseline, full_attention_mask
from configuration_causal2vec import CONTEXTUAL_TOKEN_FIELDS


@pytest.mark.parametrize("name", BASELINES)
def test_interface_and_shared_weights(tiny, name):
    module = build_baseline(name, tiny)
    batch = module.tokenizer(TEXTS, return_tensors="pt")
    out = module(**batch).sentence_embedding
    assert out.shape == (len(TEXTS), module.config.embedding_dim)
    assert torch.isfinite(out).all()
    emb = module.encode(TEXTS, prompt=module.config.query_prompt("Find it"))
    assert emb.shape == (len(TEXTS), module.config.embedding_dim)
    if name == "encoder":
        assert module.decoder is None
        assert module.encoder is tiny.encoder
    else:
        assert module.decoder is tiny.decoder  # the same weights, not a copy
        assert module.config.embedding_dim == tiny.config.decoder.hidden_size


# a value other than the default for every contextual-token field (the test fails if a field is missing here)
OTHER_CONTEXTUAL = {
    "connector_num_layers": 3,
    "connector_hidden_size": 28,  # isometric needs widths that never shrink: 24 -> 28 -> 28 -> 32
    "connector_output_size": 32,  # must be the tiny decoder's width: the same as the default
    "connector_activation": "silu",
    "connector_norm": "none",
    "connector_init": "isometric",
    "contextual_scale": 1.0,
    "encoder_pooling": "cls",
    "contextual_position": "before_text",
    "pooling": "eos",
}


def test_baselines_ignore_the_contextual_token_fields(tiny, one_thread):
    """What `train.config.BASELINE_SAFE_KEYS` relies on: a baseline embeds the same whatever those fields are."""
    assert set(OTHER_CONTEXTUAL) == set(CONTEXTUAL_TOKEN_FIELDS)
    other = build_random(seed=1, **OTHER_CONTEXTUAL)
    other.decoder.load_state_dict(tiny.decoder.state_dict())
    other.encoder.load_state_dict(tiny.encoder.state_dict())
    mine, theirs = tiny.encode(TEXTS[:2]), other.encode(TEXTS[:2])  # the Causal2Vec model does change
    assert mine.shape != theirs.shape or not np.allclose(mine, theirs, atol=1e-3)
    prompt = tiny.config.query_prompt("Find it")
    for name in BASELINES:
        a = build_baseline(name, tiny).encode(TEXTS, prompt=prompt)
        b = build_baseline(name, other).encode(TEXTS, prompt=prompt)
        np.testing.assert_array_equal(a, b, err_msg=name)


@pytest.mark.parametrize("name", ["eos", "mean", "echo", "bidirectional", "incontext"])
def test_batch_size_and_padding_side_invariance(tiny, name):
    module = build_baseline(name, tiny)
    reference = np.stack([module.encode(t) for t in TEXTS])  # one text per batch: no padding
    np.testing.assert_allclose(module.encode(TEXTS, batch_size=len(TEXTS)), reference, atol=1e-5)
    np.testing.assert_allclose(module.encode(TEXTS, batch_size=2), reference, atol=1e-5)
    module.tokenizer.padding_side = "left"
    assert module.tokenizer(TEXTS, return_tensors="pt")["attention_mask"][:, 0].min() == 0
    np.testing.assert_allclose(module.encode(TEXTS, batch_size=len(TEXTS)), reference, atol=1e-5)


def test_eos_layout_is_plain_decoder_input(tiny):
    module = build_baseline("eos", tiny)
    tok = tiny.tokenizer
    ids = module.tokenizer(["The cat sleeps."])["input_ids"][0]
    plain = type(tok).__mro__[1].__call__(tok, ["The cat sleeps."], add_special_tokens=False)["input_ids"][0]
    assert tok.decoder_add_bos and ids == [tok.bos_token_id] + plain + [tok.eos_token_id]
    assert module.tokenizer(["The cat sleeps."])["pool_mask"][0] == [0] * (len(ids) - 1) + [1]


def test_echo_pools_only_over_second_copy(tiny):
    module = build_baseline("echo", tiny).eval()
    text = "Stock markets fell sharply on Monday."
    batch = module.tokenizer([text], return_tensors="pt")
    ids, pool = batch["input_ids"][0].tolist(), batch["pool_mask"][0].bool()
    body = module.tokenizer.ids([" " + text])[0]  # after "sentence:", the text's first word has its space
    n = len(body)
    assert ids[-1] == tiny.tokenizer.eos_token_id
    assert ids[-1 - n : -1] == body and ids.count(body[0]) >= 2  # the text occurs twice
    assert pool.sum() == n and pool[-1 - n : -1].all()  # exactly the second copy's tokens
    hidden = module(**batch).last_hidden_state[0]
    np.testing.assert_allclose(
        module(**batch).sentence_embedding[0].detach(), hidden[-1 - n : -1].mean(0).detach(), atol=1e-6
    )
    # the second copy sees the whole text through the first: changing the last word changes early pooled states
    other = module.tokenizer([text.replace("Monday", "Friday")], return_tensors="pt")
    h2 = module(**other).last_hidden_state[0]
    assert not torch.allclose(
        hidden[-1 - n], h2[-1 - len(module.tokenizer.ids([" " + text.replace("Monday", "Friday")])[0])]
    )


def test_echo_row_is_the_joint_tokenization_of_the_template(tiny):
    """No lone space token after "sentence:" (the template and the text are tokenized apart)."""
    module = build_baseline("echo", tiny)
    text = "The cat sleeps."
    ids = module.tokenizer([text])["input_ids"][0]
    joint = module.tokenizer.ids([f"Rewrite the sentence: {text}\nRewritten sentence: {text}"])[0]
    assert ids == tiny.tokenizer.decoder_prefix_ids + joint + [tiny.tokenizer.eos_token_id]


@pytest.mark.parametrize("family", DECODER_FAMILIES)
def test_bidirectional_really_sees_later_tokens(family):
    from causal2vec.assemble import build_random

    model = build_random(decoder=DECODER_FAMILIES[family])
    assert model.decoder.config._attn_implementation in ("sdpa", "eager")
    bi, causal = build_baseline("bidirectional", model).eval(), build_baseline("mean", model).eval()
    a = bi.tokenizer(["the cat sat on the mat"], return_tensors="pt")
    b = bi.tokenizer(["the cat sat on the rug"], return_tensors="pt")
    assert a["input_ids"].shape == b["input_ids"].shape
    ha, hb = bi(**a).last_hidden_state, bi(**b).last_hidden_state
    assert not torch.allclose(ha[0, 0], hb[0, 0], atol=1e-6), "the first token's state depends on the last word"
    ca, cb = causal(**a).last_hidden_state, causal(**b).last_hidden_state
    torch.testing.assert_close(ca[0, 0], cb[0, 0])  # under the causal mask it does not
    assert not torch.allclose(bi(**a).sentence_embedding, causal(**a).sentence_embedding, atol=1e-4)
    # padding: a padded batch gives the same embeddings as one text at a time, under sdpa and eager alike
    reference = np.stack([bi.encode(t) for t in TEXTS[:3]])
    np.testing.assert_allclose(bi.encode(TEXTS[:3], batch_size=3), reference, atol=1e-5)
    model.decoder.config._attn_implementation = "eager"
    np.testing.assert_allclose(bi.encode(TEXTS[:3], batch_size=3), reference, atol=1e-4)


@pytest.mark.parametrize("attn", ["flash_attention_2", "flex_attention"])
def test_bidirectional_refuses_attention_that_ignores_its_mask(tiny, attn):
    tiny.decoder.config._attn_implementation = attn
    with pytest.raises(ValueError, match=f"needs attn_implementation 'sdpa' or 'eager'.*uses '{attn}'"):
        build_baseline("bidirectional", tiny)
    build_baseline("mean", tiny)  # causal baselines do not care


def test_full_attention_mask():
    mask = full_attention_mask(torch.tensor([[1, 1, 0], [1, 1, 1]]), torch.float32)
    assert mask.shape == (2, 1, 3, 3)
    assert (mask[1] == 0).all()  # all tokens see all tokens
    assert mask[0, 0, 0, 1] == 0 and mask[0, 0, 0, 2] < -1e30 and mask[0, 0, 2, 2] == 0


def test_incontext_prefixes_demonstrations(tiny):
    one, four = build_baseline("incontext", tiny, k=1), build_baseline("incontext", tiny)
    n1 = len(one.tokenizer(["x"])["input_ids"][0])
    n4 = len(four.tokenizer(["x"])["input_ids"][0])
    assert n4 > n1 > len(build_baseline("eos", tiny).tokenizer(["x"])["input_ids"][0])
    custom = build_baseline("incontext", tiny, k=1, demos=[("a question", "an answer")])
    assert len(custom.tokenizer(["x"])["input_ids"][0]) < n1


def test_encoder_baseline_is_mean_pooled_encoder(tiny):
    module = build_baseline("encoder", tiny)
    tiny.eval()  # no dropout in the reference computation
    enc = tiny.tokenizer.encoder_tokenizer(["The cat sleeps."], return_tensors="pt", return_token_type_ids=False)
    states = tiny.encoder(**enc).last_hidden_state
    expected = states.mean(1)[0].detach().numpy()
    np.testing.assert_allclose(module.encode("The cat sleeps."), expected, atol=1e-5)
    # a query prompt never reaches the encoder
    np.testing.assert_allclose(
        module.encode("The cat sleeps.", prompt=module.config.query_prompt("x")), expected, atol=1e-5
    )


def test_truncation_keeps_eos(tiny):
    module = build_baseline("echo", tiny)
    module.tokenizer.max_length = 24
    batch = module.tokenizer([" ".join(["word"] * 50)])
    assert (
        len(batch["input_ids"][0]) in (23, 24)
        and sum(batch["pool_mask"][0]) >= 4
        and batch["input_ids"][0][-1] == tiny.tokenizer.eos_token_id
    )


@pytest.mark.parametrize("name", ["eos", "echo", "incontext"])
def test_long_texts_give_no_false_length_warning(tiny, name, caplog):
    """Texts longer than the tokenizer's model_max_length are cut by the layout, so transformers' "indexing errors"
    warning would be false (it showed in every efficiency run on SciFact documents)."""
    from transformers.utils import logging as hf_logging

    module = build_baseline(name, tiny)
    hf_logging.enable_propagation()
    try:
        with caplog.at_level("WARNING"):
            batch = module.tokenizer([" ".join(["word"] * 3 * tiny.config.decoder_max_length)])
    finally:
        hf_logging.disable_propagation()
    assert batch["input_ids"][0][-1] == tiny.tokenizer.eos_token_id
    assert not [r for r in caplog.records if "sequence length is longer" in r.getMessage()]


def test_unknown_baseline(tiny):
    with pytest.raises(ValueError, match="unknown baseline 'nope'"):
        build_baseline("nope", tiny)
    with pytest.raises(ValueError, match="unknown options"):
        build_baseline("eos", tiny, k=3)


@pytest.fixture(scope="module")
def short():
    """A tiny model whose decoder budget (16) is far below the 4 demonstrations' ~125 tokens."""
    from causal2vec.assemble import build_random

    return build_random(decoder_max_length=16)


@pytest.mark.parametrize("name", BASELINES)
def test_every_baseline_embeds_with_a_short_decoder_budget(short, name):
    module = build_baseline(name, short)
    emb = module.encode(TEXTS, batch_size=2)
    assert emb.shape == (len(TEXTS), module.config.embedding_dim) and np.isfinite(emb).all()
    if name == "encoder":
        return
    rows = module.tokenizer(TEXTS)["input_ids"]
    demos = len(module.tokenizer.demos)
    fill = max(len(r) for r in rows) - demos
    assert 16 - (name == "echo") <= fill <= 16, "long texts fill the budget (echo: two halves), demonstrations on top"
    if name == "incontext":
        assert demos > 16
        eos_rows = build_baseline("eos", short).tokenizer(TEXTS)["input_ids"]
        prefix, bos = len(module.tokenizer.prefix), len(module.tokenizer.bos)  # [BOS] demos, [BOS]
        same = [r[prefix:] for r in rows] == [r[bos:] for r in eos_rows]
        assert same, "the text gets the same room as in the eos baseline"


@pytest.fixture(scope="module")
def train_data(tmp_path_factory):
    return make_train_data(tmp_path_factory.mktemp("train-data"))


@pytest.mark.parametrize("name", BASELINES)
def test_every_baseline_trains_two_steps_and_evaluates(name, train_data, tmp_path, one_thread):
    """`--set baseline=NAME` on the tiny config (decoder_max_length 48, below the demonstrations' length)."""
    from evaluation.embedder import Embedder
    from train.__main__ import main

    out = tmp_path / name
    args = ["fit", "--config", "tiny", "--output", str(out), "--set", f"data={train_data}", "--set", f"baseline={name}"]
    assert main([*args, "--set", "steps=2", "--set", "save_every=2"]) == 0
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [1, 2] and all(np.isfinite(m["loss"]) for m in metrics)
    assert f"Trained as the `{name}` baseline" in (out / "model" / "README.md").read_text()
    embedder = Embedder.from_path(out / "model", baseline=name, cache_dir=None, show_progress_bar=False)
    emb = embedder.embed(TEXTS[:2], "Retrieve evidence")
    assert emb.shape[0] == 2 and np.isfinite(emb).all()
