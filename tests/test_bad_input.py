"""Bad input gets a clear error naming the problem, or a documented result."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from transformers import AutoConfig, AutoModel, AutoTokenizer, logging
from transformers.testing_utils import CaptureLogger

from causal2vec.assemble import TINY_DECODER, TINY_ENCODER
from configuration_causal2vec import Causal2VecConfig


def test_empty_list_gives_zero_rows(tiny):
    emb = tiny.encode([])
    assert emb.shape == (0, tiny.config.embedding_dim)


def test_empty_string_is_embedded_as_bos_c_eos(tiny):
    batch = tiny.tokenizer([""])
    tok = tiny.tokenizer
    assert batch["input_ids"][0] == [tok.bos_token_id, tok.pad_token_id, tok.eos_token_id]  # BOS + C slot + EOS
    assert np.isfinite(tiny.encode("")).all()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (None, "got None"),
        (["ok", 3], "text 1 is int"),
        (["ok", None], "text 1 is NoneType"),
        (42, "got int"),
        ([b"bytes"], "text 0 is bytes"),
    ],
)
def test_non_strings_are_rejected(tiny, value, message):
    with pytest.raises(TypeError, match=message):
        tiny.encode(value)
    with pytest.raises(TypeError, match=message):
        tiny.tokenizer(value)


def test_huge_text_is_truncated_not_crashing(tiny):
    huge = "lorem ipsum dolor " * 12_000  # ~200k characters
    assert len(huge) > 200_000
    with CaptureLogger(logging.get_logger("transformers.tokenization_utils_base")) as log:
        batch = tiny.tokenizer([huge])
    assert "Token indices sequence length" not in log.out  # truncation is ours: no false alarm
    assert len(batch["input_ids"][0]) == tiny.config.decoder_max_length
    assert len(batch["encoder_input_ids"][0]) == tiny.config.encoder_max_length
    assert np.isfinite(tiny.encode(huge)).all()


def test_emoji_and_control_characters(tiny):
    texts = ["🙂🚀 naïve café", "tab\tnew\nline\r\x00\x07 bell", "\u200b\u202e mixed دنيا 世界"]
    emb = tiny.encode(texts)
    assert emb.shape == (3, tiny.config.embedding_dim) and np.isfinite(emb).all()
    np.testing.assert_allclose(emb, np.stack([tiny.encode(t) for t in texts]), atol=1e-5)


def test_bad_encode_arguments(tiny):
    with pytest.raises(ValueError, match="unknown prompt_name 'passage'"):
        tiny.encode(["a"], prompt_name="passage")
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        tiny.encode(["a"], batch_size=0)
    with pytest.raises(ValueError, match="text pairs are not supported"):
        tiny.tokenizer(["a"], ["b"])


def test_forward_without_tokenizer_outputs(tiny):
    with pytest.raises(ValueError, match="contextual_index"):
        tiny(input_ids=torch.tensor([[1, 2, 3]]), encoder_input_ids=torch.tensor([[101, 102]]))
    with pytest.raises(ValueError, match="outside a row"):
        tiny(
            input_ids=torch.tensor([[1, 2, 3]]),
            encoder_input_ids=torch.tensor([[101, 102]]),
            contextual_index=torch.tensor([7]),
        )


def _batch(tiny, texts=("a cat", "a much longer text about dogs")):
    return dict(tiny.tokenizer(list(texts), return_tensors="pt"))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda b: {"contextual_index": torch.tensor([0, 0, 0])}, "batch sizes differ: input_ids has 2 rows"),
        (lambda b: {"encoder_input_ids": b["encoder_input_ids"][:1]}, "encoder_input_ids 1, contextual_index 2"),
        (lambda b: {"encoder_attention_mask": b["encoder_attention_mask"][:1]}, "encoder_attention_mask has shape"),
        (lambda b: {"attention_mask": b["attention_mask"][:, :-1]}, "attention_mask has shape"),
        (lambda b: {"input_ids": b["input_ids"][0]}, "input_ids must be 2-D"),
        (lambda b: {"input_ids": b["input_ids"] + 10**6}, r"input_ids holds ids outside \[0, 49152\)"),
        (lambda b: {"input_ids": b["input_ids"] - 10**6}, r"input_ids holds ids outside \[0, 49152\)"),
        (lambda b: {"encoder_input_ids": b["encoder_input_ids"] + 10**6}, r"encoder_input_ids holds ids outside"),
    ],
)
def test_forward_checks_shapes_and_ids(tiny, change, message):
    batch = _batch(tiny)
    with pytest.raises(ValueError, match=message):
        tiny(**{**batch, **change(batch)})


def test_value_checks_stay_off_the_accelerator_hot_path(tiny, monkeypatch):
    """Range checks read tensors back to the host (a wait on an accelerator): CPU inputs by default, or as set."""
    batch = _batch(tiny)
    bad = {**batch, "input_ids": batch["input_ids"] + 10**6}
    reads = []
    monkeypatch.setattr(torch.Tensor, "__int__", lambda t: reads.append(1) or t.item())
    tiny(**batch)
    assert reads, "CPU inputs are checked"
    tiny.check_input_values = False
    reads.clear()
    tiny(**batch)
    assert not reads, "no host read of input values when the checks are off (the default on an accelerator)"
    with pytest.raises(IndexError):  # torch's own error, not ours
        tiny(**bad)
    tiny.check_input_values = True
    with pytest.raises(ValueError, match="input_ids holds ids outside"):
        tiny(**bad)


def test_one_row_with_two_contextual_indices(tiny):
    batch = _batch(tiny, ["a cat"])
    with pytest.raises(ValueError, match="input_ids has 1 rows.*contextual_index 2 values"):
        tiny(**{**batch, "contextual_index": torch.tensor([0, 1])})


def test_empty_batch(tiny):
    """`tokenizer([])` is a batch of zero rows with every key; the model embeds it to (0, dim)."""
    assert dict(tiny.tokenizer([])) == {name: [] for name in tiny.tokenizer.model_input_names}
    batch = tiny.tokenizer([], return_tensors="pt")
    assert batch["input_ids"].shape == (0, 0) and batch["encoder_attention_mask"].shape == (0, 0)
    assert batch["contextual_index"].shape == (0,)
    assert tiny(**batch).sentence_embedding.shape == (0, tiny.config.embedding_dim)
    assert tiny.encode([], prompt="Represent this: ").shape == (0, tiny.config.embedding_dim)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"max_length": 0}, "max_length must be >= 4"),
        ({"max_length": 3}, "max_length must be >= 4"),
        ({"truncation": False}, "truncation=False is not supported: Causal2VecTokenizer always truncates"),
        ({"truncation": "do_not_truncate"}, "always truncates"),
        ({"add_special_tokens": False}, "does not support add_special_tokens=False"),
        ({"return_offsets_mapping": True}, "does not support return_offsets_mapping=True"),
        ({"stride": 2}, "does not support stride=2"),
        ({"is_split_into_words": True}, "does not support is_split_into_words=True"),
        ({"frobnicate": 1}, "does not support the argument frobnicate=1"),
        ({"padding": "max_length"}, "padding='max_length' is not supported"),
        ({"padding": "sideways"}, "unsupported padding='sideways'"),
        ({"prompt": ["a", "b", "c"]}, "got 3 prompts for 2 texts"),
        ({"prompt": 3}, "got int"),
        ({"text_target": ["x", "y"]}, "text pairs are not supported"),
    ],
)
def test_tokenizer_refuses_options_it_cannot_honour(tiny, kwargs, error):
    with pytest.raises((ValueError, TypeError), match=error):
        tiny.tokenizer(["a", "b"], **kwargs)


def test_tokenizer_accepts_what_pipelines_and_sentence_transformers_pass(tiny):
    texts = ["a cat", "a much longer text about dogs"]
    plain = tiny.tokenizer(texts)
    for kwargs in (
        {"padding": True, "truncation": "longest_first", "return_tensors": "pt"},  # sentence-transformers
        {"truncation": True, "return_tensors": "pt"},  # pipeline(..., tokenize_kwargs={"truncation": True})
        {"padding": "longest", "max_length": 512, "add_special_tokens": True, "verbose": False},
        {"return_attention_mask": True, "return_token_type_ids": None},
    ):
        batch = tiny.tokenizer(texts, **kwargs)
        ids = batch["input_ids"].tolist() if kwargs.get("return_tensors") else batch["input_ids"]
        assert ids == plain["input_ids"], kwargs
    short = tiny.tokenizer(["word " * 50], max_length=4)
    assert len(short["input_ids"][0]) == 4 and short["input_ids"][0][-1] == tiny.tokenizer.eos_token_id
    left = tiny.tokenizer(texts, padding_side="left")
    assert left["attention_mask"][0][0] == 0 and left["encoder_attention_mask"][0][-1] == 0


def _config(**kwargs):
    return Causal2VecConfig(
        decoder=AutoConfig.for_model(**TINY_DECODER, vocab_size=100),
        encoder=AutoConfig.for_model(**TINY_ENCODER, vocab_size=100),
        **kwargs,
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"connector_output_size": 99}, "connector_output_size=99 but the decoder hidden size is 32"),
        ({"pooling": "max"}, "Unknown pooling 'max'"),
        ({"encoder_pooling": "last"}, "Unknown encoder_pooling 'last'"),
        ({"contextual_position": "end"}, "Unknown contextual_position 'end'"),
        ({"connector_activation": "swish2"}, "Unknown connector_activation"),
        ({"connector_num_layers": 0}, "connector_num_layers must be >= 1"),
        ({"decoder_max_length": 2}, "decoder_max_length"),
        ({"prompt_template": "no placeholder"}, "prompt_template must contain"),
        ({"encoder_max_length": 513}, "encoder_max_length=513 is more than the bert encoder can take: 512 positions"),
        ({"decoder_max_length": 4096}, "decoder_max_length=4096 is more than the llama decoder can take: 2048"),
    ],
)
def test_mismatched_configs(kwargs, message):
    with pytest.raises(ValueError, match=message):
        _config(**kwargs)


def test_roberta_style_encoder_positions():
    """Roberta-style encoders start position ids after padding_idx: max_position_embeddings - 2 usable here."""
    decoder = AutoConfig.for_model(**TINY_DECODER, vocab_size=100)
    encoder = {**TINY_ENCODER, "model_type": "roberta", "pad_token_id": 1, "max_position_embeddings": 514}
    config = Causal2VecConfig(decoder=decoder, encoder=AutoConfig.for_model(**encoder), encoder_max_length=512)
    assert config.encoder_max_length == 512
    with pytest.raises(ValueError, match=r"can take: 512 positions \(max_position_embeddings - 2"):
        Causal2VecConfig(decoder=decoder, encoder=AutoConfig.for_model(**encoder), encoder_max_length=513)


def test_mismatched_config_json_on_load(tiny, tmp_path):
    tiny.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["connector_output_size"] = 48
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="connector_output_size=48"):
        AutoModel.from_pretrained(tmp_path, trust_remote_code=True)


def test_folder_missing_weights(tiny, tmp_path):
    tiny.save_pretrained(tmp_path)
    os.remove(tmp_path / "model.safetensors")
    with pytest.raises(OSError, match="model.safetensors"):
        AutoModel.from_pretrained(tmp_path, trust_remote_code=True)


def test_folder_missing_encoder_tokenizer(tiny, tmp_path):
    tiny.save_pretrained(tmp_path)
    for name in os.listdir(tmp_path / "encoder_tokenizer"):
        os.remove(tmp_path / "encoder_tokenizer" / name)
    with pytest.raises(OSError, match="no encoder tokenizer in encoder_tokenizer/"):
        AutoTokenizer.from_pretrained(tmp_path, trust_remote_code=True)
    model = AutoModel.from_pretrained(tmp_path, trust_remote_code=True)
    with pytest.raises(OSError, match="no Causal2Vec tokenizer could be loaded"):
        model.encode(["a"])


def test_folder_missing_decoder_tokenizer(tiny, tmp_path):
    tiny.save_pretrained(tmp_path)
    os.remove(tmp_path / "tokenizer.json")
    with pytest.raises(OSError, match="has no tokenizer.json"):
        AutoTokenizer.from_pretrained(tmp_path, trust_remote_code=True)
