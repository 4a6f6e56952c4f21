"""Causal2VecModel: families, pooling, invariants and save/load on tiny random models."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import DECODER_FAMILIES, TEXTS
from transformers import AutoModel, AutoTokenizer

from causal2vec.assemble import TINY_DECODER, TINY_ENCODER, build_random

DECODERS = DECODER_FAMILIES
ENCODERS = {
    "bert": TINY_ENCODER,
    "roberta": {**TINY_ENCODER, "model_type": "roberta", "pad_token_id": 1, "max_position_embeddings": 600},
    "distilbert": {"model_type": "distilbert", "dim": 24, "hidden_dim": 48, "n_layers": 2, "n_heads": 2},
    "modernbert": {
        "model_type": "modernbert",
        "hidden_size": 32,
        "intermediate_size": 48,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
    },
}


def roundtrip(model, tmp_path):
    model.save_pretrained(tmp_path)
    loaded = AutoModel.from_pretrained(tmp_path, trust_remote_code=True)
    return loaded


@pytest.mark.parametrize("family", DECODERS)
def test_decoder_families(family, tmp_path):
    model = build_random(decoder=DECODERS[family])
    assert model.config.decoder.model_type == family
    emb = model.encode(TEXTS)
    assert emb.shape == (len(TEXTS), 2 * model.config.decoder.hidden_size)
    assert np.isfinite(emb).all()
    loaded = roundtrip(model, tmp_path)
    np.testing.assert_allclose(loaded.encode(TEXTS), emb, atol=1e-5)


@pytest.mark.parametrize("family", ENCODERS)
def test_encoder_families(family, tmp_path):
    model = build_random(encoder=ENCODERS[family])
    assert model.config.encoder.model_type == family
    emb = model.encode(TEXTS)
    assert emb.shape == (len(TEXTS), 64) and np.isfinite(emb).all()
    np.testing.assert_allclose(roundtrip(model, tmp_path).encode(TEXTS), emb, atol=1e-5)


@pytest.mark.parametrize("pooling", ["contextual_eos", "eos", "contextual", "mean"])
def test_pooling_definitions(pooling):
    """Each pooling picks exactly the decoder states it names (checked against the raw hidden states)."""
    model = build_random(pooling=pooling).eval()
    batch = model.tokenizer(TEXTS[:3], return_tensors="pt")
    with torch.no_grad():
        out = model(**batch)
    hidden, mask = out.last_hidden_state, batch["attention_mask"]
    for row in range(3):
        n = int(mask[row].sum())
        real = hidden[row, :n]  # right padding: real tokens first
        c, eos = real[int(batch["contextual_index"][row])], real[n - 1]
        expected = {"contextual_eos": torch.cat([c, eos]), "eos": eos, "contextual": c, "mean": real.mean(0)}[pooling]
        torch.testing.assert_close(out.sentence_embedding[row], expected)
    assert model.config.embedding_dim == out.sentence_embedding.shape[-1]


def test_invariant_to_batch_size_order_and_padding_side(tiny):
    reference = np.stack([tiny.encode(t) for t in TEXTS])  # one text per batch: no padding at all
    np.testing.assert_allclose(tiny.encode(TEXTS, batch_size=len(TEXTS)), reference, atol=1e-5)
    np.testing.assert_allclose(tiny.encode(TEXTS, batch_size=2), reference, atol=1e-5)
    order = [3, 0, 4, 2, 1]
    np.testing.assert_allclose(tiny.encode([TEXTS[i] for i in order]), reference[order], atol=1e-5)
    tiny.tokenizer.padding_side = "left"
    left = tiny.tokenizer(TEXTS, return_tensors="pt")
    assert left["attention_mask"][:, 0].min() == 0, "the batch really is left-padded"
    np.testing.assert_allclose(tiny.encode(TEXTS, batch_size=len(TEXTS)), reference, atol=1e-5)


def test_contextual_token_is_used(tiny):
    """Changing only the encoder's input changes the embedding: C carries information."""
    batch = tiny.tokenizer(["The cat sleeps."], return_tensors="pt")
    other = tiny.tokenizer(["A completely different sentence about rockets."], return_tensors="pt")
    with torch.no_grad():
        base = tiny(**batch).sentence_embedding
        swapped = tiny(
            **{
                **batch,
                "encoder_input_ids": other["encoder_input_ids"],
                "encoder_attention_mask": other["encoder_attention_mask"],
            }
        ).sentence_embedding
    assert (base - swapped).abs().max() > 1e-3


@pytest.mark.parametrize("position", ["before_instruction", "before_text"])
def test_pooling_c_alone_never_reads_the_decoders_text(position):
    """Under the causal mask C sees only what precedes it (BOS, and the instruction when C comes before the text), so
    `pooling: contextual` is a function of the encoder's input: the decoder's text cannot change it, while the
    method's C + EOS does (docs/experiments.md, "Pooling C alone")."""
    texts = ["The cat sleeps on the mat.", "Rockets burn liquid oxygen and kerosene to reach orbit."]
    embeddings = {}
    for pooling in ("contextual", "contextual_eos"):
        model = build_random(pooling=pooling, contextual_position=position).eval()
        prompt = model.config.query_prompt("Find the answer")  # the same instruction, before or after C
        a, b = (model.tokenizer([prompt + t], return_tensors="pt") for t in texts)
        # b's decoder tokens, a's encoder input
        swapped = {**b, **{k: a[k] for k in ("encoder_input_ids", "encoder_attention_mask")}}
        with torch.no_grad():
            embeddings[pooling] = [model(**x).sentence_embedding[0] for x in (a, swapped, b)]
    c_of_a, c_of_swapped, c_of_b = embeddings["contextual"]
    torch.testing.assert_close(c_of_swapped, c_of_a)  # b's decoder text changes nothing
    assert (c_of_swapped - c_of_b).abs().max() > 1e-3  # a's encoder input does: it is C's state, not a fixed slot
    hidden = c_of_a.shape[0]
    eos_of_a, eos_of_swapped, _ = (e[hidden:] for e in embeddings["contextual_eos"])
    assert (eos_of_a - eos_of_swapped).abs().max() > 1e-3  # the method's EOS half reads the decoder's text


@pytest.mark.parametrize("bos", [True, False])
@pytest.mark.parametrize("position", ["before_instruction", "before_text"])
def test_contextual_token_position(position, bos):
    model = build_random(contextual_position=position, decoder_add_bos=bos).eval()
    tok = model.tokenizer
    prompt = model.config.query_prompt("Find the answer")
    text = "What is the capital of France?"
    batch = tok([prompt + text], return_tensors="pt")
    ids = batch["input_ids"][0].tolist()
    prompt_ids = tok.backend_tokenizer.encode(prompt, add_special_tokens=False).ids
    text_ids = tok.backend_tokenizer.encode(text, add_special_tokens=False).ids
    index = int(batch["contextual_index"][0])
    head = [tok.bos_token_id] if bos else []  # SmolLM2's tokenizer adds no BOS of its own: the config puts it there
    assert tok.decoder_prefix_ids == head and ids[: len(head)] == head
    if position == "before_instruction":
        assert index == len(head) and ids[index + 1 : index + 1 + len(prompt_ids)] == prompt_ids
    else:
        assert index == len(head) + len(prompt_ids) and ids[len(head) : index] == prompt_ids
    assert ids[index + 1 + (0 if position == "before_text" else len(prompt_ids)) :][: len(text_ids)] == text_ids
    assert ids[-1] == tok.eos_token_id
    # the decoder really receives C at that slot: capture inputs_embeds and compare to the connector output
    seen = {}
    handle = model.decoder.register_forward_pre_hook(lambda module, args, kwargs: seen.update(kwargs), with_kwargs=True)
    with torch.no_grad():
        out = model(**batch)
    handle.remove()
    torch.testing.assert_close(seen["inputs_embeds"][0, index], out.contextual_token[0])
    assert seen["position_ids"][0].tolist() == list(range(len(ids)))
    # the encoder sees the text without the prompt
    assert batch["encoder_input_ids"][0].tolist() == tok.encoder_tokenizer(text)["input_ids"]


def test_eos_survives_truncation():
    model = build_random(decoder_max_length=16, encoder_max_length=8)
    long = "word " * 500
    batch = model.tokenizer([long, "short"], return_tensors="pt")
    assert batch["input_ids"].shape[1] == 16 and batch["encoder_input_ids"].shape[1] == 8
    assert batch["input_ids"][0, -1] == model.tokenizer.eos_token_id
    assert batch["encoder_input_ids"][0, -1] == model.tokenizer.encoder_tokenizer.sep_token_id
    prompt = model.config.query_prompt("x")
    batch = model.tokenizer([prompt + long], return_tensors="pt")
    assert batch["input_ids"].shape[1] == 16 and batch["input_ids"][0, -1] == model.tokenizer.eos_token_id


def test_save_load_identical(tiny, tmp_path):
    before = tiny.encode(TEXTS)
    loaded = roundtrip(tiny, tmp_path)
    assert type(loaded).__name__ == "Causal2VecModel"
    for key, value in tiny.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key
    np.testing.assert_array_equal(loaded.encode(TEXTS), before)
    tok = AutoTokenizer.from_pretrained(tmp_path, trust_remote_code=True)
    assert tok(TEXTS)["input_ids"] == tiny.tokenizer(TEXTS)["input_ids"]


def test_encode_options(tiny):
    emb = tiny.encode(TEXTS, normalize_embeddings=True)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    tensor = tiny.encode(TEXTS, convert_to_tensor=True)
    assert isinstance(tensor, torch.Tensor) and tensor.shape == emb.shape
    single = tiny.encode(TEXTS[0])
    assert single.shape == (64,)
    query = tiny.encode(TEXTS[:2], prompt_name="query")
    np.testing.assert_allclose(query, tiny.encode(TEXTS[:2], prompt=tiny.config.query_prompt()), atol=1e-6)
    assert np.abs(query - tiny.encode(TEXTS[:2])).max() > 1e-4, "the prompt changes the embedding"
    bf16 = tiny.encode(TEXTS, dtype=torch.bfloat16)
    assert bf16.dtype == np.float32
    cos = (bf16 * tiny.encode(TEXTS)).sum(1) / np.linalg.norm(bf16, axis=1) / np.linalg.norm(tiny.encode(TEXTS), axis=1)
    assert cos.min() > 0.98
    tiny.train()
    tiny.encode(TEXTS[:1])
    assert tiny.training


def test_encode_truncate_dim_keeps_the_prefix_then_normalises(tiny, one_thread):
    """`truncate_dim=k` (every k from 1 to the embedding size) is the first k dimensions, and
    `normalize_embeddings` normalises that prefix, as sentence-transformers does; other values are refused."""
    dim, texts = tiny.config.embedding_dim, TEXTS[:2]
    full = tiny.encode(texts)
    for k in range(1, dim + 1):
        np.testing.assert_allclose(tiny.encode(texts, truncate_dim=k), full[:, :k], atol=1e-6)
    half = dim // 2
    prefix = full[:, :half] / np.linalg.norm(full[:, :half], axis=1, keepdims=True)
    np.testing.assert_allclose(tiny.encode(texts, truncate_dim=half, normalize_embeddings=True), prefix, atol=1e-6)
    assert tiny.encode(texts[0], truncate_dim=np.int64(3)).shape == (3,)
    assert tiny.encode([], truncate_dim=3).shape == (0, 3)
    for bad in (0, dim + 1, -1):
        with pytest.raises(ValueError, match=f"truncate_dim must be from 1 to {dim}"):
            tiny.encode(texts, truncate_dim=bad)
    for bad in (True, 2.0, "3"):
        with pytest.raises(TypeError, match="truncate_dim must be an int"):
            tiny.encode(texts, truncate_dim=bad)


def test_encode_with_token_counts_is_encode_and_the_decoder_token_counts(tiny, one_thread):
    """The server's call: `encode`'s vectors, and per text the decoder tokens (prompt, C, EOS included) of the
    batches the forward ran on."""
    prompt = tiny.config.query_prompt()
    vectors, tokens = tiny.encode_with_token_counts(TEXTS, prompt=prompt, batch_size=2)
    np.testing.assert_allclose(vectors, tiny.encode(TEXTS, prompt=prompt), atol=1e-6)
    assert tokens == [len(ids) for ids in tiny.tokenizer(TEXTS, prompt=prompt, padding=False)["input_ids"]]
    assert tiny.encode_with_token_counts([])[0].shape == (0, tiny.config.embedding_dim)


def test_loads_in_bf16(tiny, tmp_path):
    tiny.save_pretrained(tmp_path)
    half = AutoModel.from_pretrained(tmp_path, trust_remote_code=True, dtype=torch.bfloat16)
    assert half.decoder.dtype == torch.bfloat16 and half.connector.layers[0].weight.dtype == torch.bfloat16
    a, b = half.encode(TEXTS, normalize_embeddings=True), tiny.encode(TEXTS, normalize_embeddings=True)
    assert a.dtype == np.float32 and (a * b).sum(1).min() > 0.98


def test_from_parts_with_loaded_models():
    """Loaded models (an LM head is dropped) and their tokenizers make a model that carries their weights."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from modeling_causal2vec import Causal2VecModel

    donor = build_random()
    decoder_config = AutoConfig.for_model(**{**TINY_DECODER, "vocab_size": donor.config.decoder.vocab_size})
    decoder = AutoModelForCausalLM.from_config(decoder_config)
    model = Causal2VecModel.from_parts(
        decoder,
        donor.encoder,
        decoder_tokenizer=donor.tokenizer,
        encoder_tokenizer=donor.tokenizer.encoder_tokenizer,
        pooling="eos",
        contextual_position="before_text",
    )
    assert model.config.pooling == "eos" and model.tokenizer.contextual_position == "before_text"
    for key, value in decoder.model.state_dict().items():
        assert torch.equal(model.decoder.state_dict()[key], value), key
    for key, value in donor.encoder.state_dict().items():
        assert torch.equal(model.encoder.state_dict()[key], value), key
    assert model.encode(TEXTS).shape == (len(TEXTS), 32)
    with pytest.raises(ValueError, match="pass decoder_tokenizer and encoder_tokenizer"):
        Causal2VecModel.from_parts(decoder, donor.encoder)


def _rows(model, batch):
    """Each row of `batch` run through `model(**batch)`: (batch, dim)."""
    with torch.no_grad():
        return model(**batch).sentence_embedding


def test_forward_rows_do_not_depend_on_batch_order_or_neighbours(tiny):
    """`model(**batch)` directly (no length sorting): a padded batch, its permutation and single rows agree."""
    tiny.eval()
    batch = tiny.tokenizer(TEXTS, return_tensors="pt")
    assert batch["attention_mask"].min() == 0, "the batch really is padded"
    emb = _rows(tiny, batch)
    order = [3, 0, 4, 2, 1]
    permuted = tiny.tokenizer([TEXTS[i] for i in order], return_tensors="pt")
    torch.testing.assert_close(_rows(tiny, permuted), emb[order], atol=1e-5, rtol=0)
    alone = torch.cat([_rows(tiny, tiny.tokenizer([t], return_tensors="pt")) for t in TEXTS])
    torch.testing.assert_close(emb, alone, atol=1e-5, rtol=0)


@pytest.mark.parametrize("position", ["before_instruction", "before_text"])
def test_contextual_token_is_causally_visible_from_its_slot_on(position):
    """Swapping the encoder input changes the decoder states from C on, and none before C."""
    model = build_random(contextual_position=position).eval()
    prompt = model.config.query_prompt("Find the answer")
    batch = model.tokenizer([prompt + "The cat sleeps."], return_tensors="pt")
    other = model.tokenizer(["Rockets launch from Florida every week."], return_tensors="pt")
    swapped = {**batch, "encoder_input_ids": other["encoder_input_ids"]}
    swapped["encoder_attention_mask"] = other["encoder_attention_mask"]
    with torch.no_grad():
        a = model(**batch).last_hidden_state[0]
        b = model(**swapped).last_hidden_state[0]
    index = int(batch["contextual_index"][0])
    if position == "before_text":
        assert index > 0
        torch.testing.assert_close(a[:index], b[:index], atol=0, rtol=0)  # the prompt cannot see C
    assert bool(((a[index:] - b[index:]).abs().amax(-1) > 1e-4).all()), "every token from C on sees C"


def test_left_padded_positions_count_real_tokens(tiny):
    """A left-padded row gets position ids 0..n-1 over its real tokens: same states as right padding."""
    tiny.eval()
    texts = ["x", TEXTS[2]]
    right = tiny.tokenizer(texts, return_tensors="pt")
    tiny.tokenizer.padding_side = "left"
    left = tiny.tokenizer(texts, return_tensors="pt")
    assert left["attention_mask"][0, 0] == 0 and right["attention_mask"][0, -1] == 0
    seen = {}
    handle = tiny.decoder.register_forward_pre_hook(lambda module, args, kwargs: seen.update(kwargs), with_kwargs=True)
    with torch.no_grad():
        hidden_left = tiny(**left).last_hidden_state
        positions = seen["position_ids"]
        hidden_right = tiny(**right).last_hidden_state
    handle.remove()
    n = int(left["attention_mask"][0].sum())
    assert positions[0, -n:].tolist() == list(range(n))
    for row in range(2):
        n = int(right["attention_mask"][row].sum())
        torch.testing.assert_close(hidden_left[row, -n:], hidden_right[row, :n], atol=1e-5, rtol=0)


def test_cls_encoder_pooling_pads_the_encoder_on_the_right():
    """`encoder_pooling="cls"` reads the first encoder state: the encoder side is right-padded whatever the
    encoder tokenizer was set to, and embeddings do not depend on the decoder's padding side or batch size."""
    from transformers import AutoTokenizer

    from causal2vec.parts import default_decoder_path, default_encoder_path
    from modeling_causal2vec import build_tokenizer

    model = build_random(encoder_pooling="cls").eval()
    encoder_tokenizer = AutoTokenizer.from_pretrained(default_encoder_path(), padding_side="left")
    model.tokenizer = build_tokenizer(
        model.config, AutoTokenizer.from_pretrained(default_decoder_path()), encoder_tokenizer
    )
    assert model.tokenizer.encoder_tokenizer.padding_side == "right"
    model.tokenizer.encoder_tokenizer.padding_side = "left"  # set behind its back: the call still pads right
    batch = model.tokenizer(TEXTS, return_tensors="pt")
    cls_id = model.tokenizer.encoder_tokenizer.cls_token_id
    assert (batch["encoder_input_ids"][:, 0] == cls_id).all() and batch["encoder_attention_mask"][:, -1].min() == 0
    with torch.no_grad():
        states = model.encoder(
            input_ids=batch["encoder_input_ids"], attention_mask=batch["encoder_attention_mask"]
        ).last_hidden_state
        torch.testing.assert_close(model(**batch).contextual_token, model.connector(states[:, 0]))
    reference = np.stack([model.encode(t) for t in TEXTS])
    np.testing.assert_allclose(model.encode(TEXTS, batch_size=len(TEXTS)), reference, atol=1e-5)
    model.tokenizer.padding_side = "left"
    np.testing.assert_allclose(model.encode(TEXTS, batch_size=2), reference, atol=1e-5)


def test_prompt_goes_to_the_decoder_only():
    """`encode(prompt=...)`/`tokenizer(prompt=...)`: any prompt reaches the decoder only, before or after C."""
    model = build_random(contextual_position="before_text").eval()
    tok = model.tokenizer
    prompt, text = "Represent this: ", "The cat sleeps."
    batch = tok([text], prompt=prompt, return_tensors="pt")
    assert batch["encoder_input_ids"][0].tolist() == tok.encoder_tokenizer(text)["input_ids"]
    prompt_ids = tok.backend_tokenizer.encode(prompt, add_special_tokens=False).ids
    ids, index = batch["input_ids"][0].tolist(), int(batch["contextual_index"][0])
    head = tok.decoder_prefix_ids  # the BOS
    assert index == len(head) + len(prompt_ids) and ids[len(head) : index] == prompt_ids, "C right after the prompt"
    with torch.no_grad():
        expected = model(**batch).sentence_embedding[0].numpy()
    np.testing.assert_allclose(model.encode(text, prompt=prompt), expected, atol=1e-6)
    # the old way, prompt prepended to the text, sent the prompt to the encoder too
    assert tok([prompt + text])["encoder_input_ids"][0] != batch["encoder_input_ids"][0].tolist()
    # a prompt in prompt_template form gives what prepending it gave (sentence-transformers' path)
    query = model.config.query_prompt("Find the answer")
    prepended = tok([query + t for t in TEXTS], return_tensors="pt")
    with torch.no_grad():
        expected = model(**prepended).sentence_embedding.numpy()
    np.testing.assert_allclose(model.encode(TEXTS, prompt=query), expected, atol=1e-5)
    assert tok(TEXTS, prompt=query)["input_ids"] == tok([query + t for t in TEXTS])["input_ids"]
    assert tok(TEXTS, prompt=[query] * len(TEXTS))["input_ids"] == tok(TEXTS, prompt=query)["input_ids"]


def test_document_prompt(tmp_path):
    """`document_prompt` is what `prompt_name="document"` and sentence-transformers' "document" prompt use."""
    import json

    from hub_causal2vec import write_sentence_transformers_files

    assert build_random().config.document_prompt == ""
    model = build_random(document_prompt="Passage: ").eval()
    doc = model.encode(TEXTS, prompt_name="document")
    np.testing.assert_allclose(doc, model.encode(TEXTS, prompt="Passage: "), atol=1e-6)
    assert np.abs(doc - model.encode(TEXTS)).max() > 1e-4
    # sentence-transformers prepends it: the tokenizer splits it off, so the encoder never sees it
    prepended = model.tokenizer(["Passage: " + t for t in TEXTS], return_tensors="pt")
    assert (
        prepended["encoder_input_ids"].tolist()
        == model.tokenizer(TEXTS, return_tensors="pt")["encoder_input_ids"].tolist()
    )
    with torch.no_grad():
        np.testing.assert_allclose(model(**prepended).sentence_embedding.numpy(), doc, atol=1e-5)
    write_sentence_transformers_files(tmp_path, model.config)
    prompts = json.loads((tmp_path / "config_sentence_transformers.json").read_text())["prompts"]
    assert prompts == {"query": model.config.query_prompt(), "document": "Passage: "}


def test_encode_on_another_device_moves_the_model_back(tiny, monkeypatch):
    """`encode(device=...)` runs there and leaves the model where it was (CPU: "cpu:0" is another device name)."""
    moves = []
    original = type(tiny).to

    def spy(self, *args, **kwargs):
        moves.append(args[0] if args else kwargs.get("device"))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(type(tiny), "to", spy)
    tiny.encode(TEXTS[:2], device="cpu:0")
    assert [str(m) for m in moves] == ["cpu:0", "cpu"]
    moves.clear()
    tiny.encode(TEXTS[:2], device="cpu")
    assert moves == []
