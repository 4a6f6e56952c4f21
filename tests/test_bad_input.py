"""Bad input gets a clear error naming the problem, or a documented result."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from transformers import AutoConfig, AutoModel, AutoTokenizer, logging
from transformers.testing_utils import CaptureLogger

from configuration_causal2vec import Causal2VecConfig
from train.build import TINY_DECODER, TINY_ENCODER


def test_empty_list_gives_zero_rows(tiny):
    emb = tiny.encode([])
    assert emb.shape == (0, tiny.config.embedding_dim)


def test_empty_string_is_embedded_as_bos_c_eos(tiny):
    batch = tiny.tokenizer([""])
    assert batch["input_ids"][0] == [tiny.tokenizer.pad_token_id, tiny.tokenizer.eos_token_id]  # C slot + EOS
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
    ],
)
def test_mismatched_configs(kwargs, message):
    with pytest.raises(ValueError, match=message):
        _config(**kwargs)


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
