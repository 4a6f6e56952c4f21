"""Assembling Causal2Vec models from parts: a pretrained decoder and encoder (`build_model`, the default
SmolLM2-135M-Instruct + all-MiniLM-L6-v2), or random parts of any family with the default parts' tokenizers
(`build_random`, the tests' and `tiny.yaml`'s); writing an untrained checkpoint with its card
(`write_checkpoint`) and telling how a saved one differs (`checkpoint_differences`). `python -m train init` is its
command line; evaluation, benchmarks and tests build models with it too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from causal2vec.dtypes import DTYPES
from causal2vec.parts import decoder_folder, default_decoder_path, default_encoder_path, offline_decoder
from hub_causal2vec import CARD_FILE, NOTICE_FILE
from modeling_causal2vec import Causal2VecModel


def build_model(
    decoder: str | None = None,
    encoder: str | None = None,
    gguf_file: str | None = None,
    seed: int = 0,
    dtype: str = "fp32",
    **config_kwargs: Any,
) -> Causal2VecModel:
    """A new Causal2Vec model; with no paths, the default SmolLM2-135M-Instruct + all-MiniLM-L6-v2.

    The pretrained parts are loaded in `dtype` (bf16 | fp32) and copied as they are; the connector is initialised
    from `seed` (so builds repeat) and cast to `dtype` too.
    """
    import torch
    from transformers import AutoModel, AutoTokenizer

    if gguf_file and (offline := offline_decoder(decoder)):
        raise ValueError(
            f"gguf_file {gguf_file!r} needs a decoder folder that holds it, not the offline part {offline!r} (converted"
            " already)"
        )
    decoder = decoder_folder(decoder)  # first: converting a GGUF file draws random numbers
    encoder = encoder or str(default_encoder_path())
    torch_dtype = DTYPES[dtype]
    torch.manual_seed(seed)
    decoder_kwargs = {"gguf_file": gguf_file} if gguf_file else {}
    parts = {
        "decoder_tokenizer": AutoTokenizer.from_pretrained(decoder, **decoder_kwargs),
        "decoder": AutoModel.from_pretrained(decoder, dtype=torch_dtype, **decoder_kwargs),
        "encoder_tokenizer": AutoTokenizer.from_pretrained(encoder),
        "encoder": AutoModel.from_pretrained(encoder, dtype=torch_dtype),
    }
    model = Causal2VecModel.from_parts(**parts, **config_kwargs)  # its parts follow the loaded parts' dtype
    return model.to(torch_dtype)


def write_checkpoint(out: Path, model: Causal2VecModel, base_models: list[str]) -> None:
    """What `init` writes: the checkpoint, and a model card naming its base models."""
    from causal2vec.card import write_model_card

    model.save_pretrained(out)
    write_model_card(out, model.config, base_models=base_models)


def checkpoint_differences(folder: Path, model: Causal2VecModel, base_models: list[str]) -> list[str]:
    """How the checkpoint in `folder` differs from what `write_checkpoint` writes: its config fields (both
    values), its tensors (bit for bit; the largest difference), then every other file written (remote code,
    tokenizer and sentence-transformers files with the prompts), byte for byte; not the card or the NOTICE (both take
    the user's edits; an older folder may lack the NOTICE). [] if the same."""
    import json
    import tempfile

    with tempfile.TemporaryDirectory(dir=folder.parent) as tmp:  # beside `folder`, not in a small /tmp
        made = Path(tmp)
        write_checkpoint(made, model, base_models)
        try:
            saved = json.loads((folder / "config.json").read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            return [f"config.json is not valid JSON ({err})"]
        mine, theirs = flatten(json.loads((made / "config.json").read_text())), flatten(saved)
        keys = mine.keys() | theirs.keys()
        if names := sorted(k for k in keys if not k.endswith("transformers_version") and mine.get(k) != theirs.get(k)):
            return [f"config {key}: {theirs.get(key)!r} there, {mine.get(key)!r} here" for key in names[:3]]
        if differences := _tensor_differences(folder / "model.safetensors", made / "model.safetensors"):
            return differences
        files = sorted(path.relative_to(made) for path in made.rglob("*") if path.is_file())
        skip = {"config.json", "model.safetensors", CARD_FILE, NOTICE_FILE}
        return [
            f"{name} {'differs' if (folder / name).is_file() else 'is missing'}"
            for name in files
            if str(name) not in skip
            and (not (folder / name).is_file() or (folder / name).read_bytes() != (made / name).read_bytes())
        ]


def _tensor_differences(theirs: Path, mine: Path) -> list[str]:
    """The tensors of two safetensors files that are not bit for bit the same ([] if none)."""
    import torch
    from safetensors import SafetensorError, safe_open

    if not theirs.is_file():
        return [f"no {theirs.name} (an unfinished or sharded checkpoint)"]
    try:
        with safe_open(theirs, "pt") as a, safe_open(mine, "pt") as b:  # one tensor at a time
            if set(a.keys()) != set(b.keys()):
                return [f"{theirs.name} holds other tensor names ({len(set(a.keys()) ^ set(b.keys()))} differ)"]
            differ, largest = [], 0.0
            for name in sorted(b.keys()):
                x, y = a.get_tensor(name), b.get_tensor(name)
                if x.shape != y.shape or x.dtype != y.dtype:
                    differ.append(f"{name} ({x.dtype} {list(x.shape)} there, {y.dtype} {list(y.shape)} here)")
                elif not torch.equal(x, y):
                    differ.append(name)
                    largest = max(largest, float((x.double() - y.double()).abs().max()))
    except SafetensorError as err:
        return [f"{theirs.name} cannot be read ({err})"]
    if not differ:
        return []
    return [f"{len(differ)} tensors differ, e.g. {differ[0]} (largest difference {largest:.3g})"]


def flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """`{"lora": {"r": 8}}` -> `{"lora.r": 8}`."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = value
    return out


TINY_DECODER = {
    "model_type": "llama",
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
}
TINY_ENCODER = {
    "model_type": "bert",
    "hidden_size": 24,
    "intermediate_size": 48,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
}


def build_random(
    decoder: dict[str, Any] | None = None,
    encoder: dict[str, Any] | None = None,
    seed: int = 0,
    dtype: str = "fp32",
    **config_kwargs: Any,
) -> Causal2VecModel:
    """A randomly initialised Causal2Vec model of any families, with the default parts' real tokenizers.

    `decoder`/`encoder` are config dicts with a `model_type` (defaults: tiny llama and bert) and optionally a
    `tokenizer`: a saved tokenizer folder to use instead of the offline part's (SmolLM2 / MiniLM), e.g. on a machine
    without those packages (`python -m benchmarks.gpu bundle`); vocabulary sizes are taken from the tokenizers;
    weights are cast to `dtype` (bf16 | fp32). Used by `train/configs/tiny.yaml`, the GPU check and the tests.
    """
    import torch
    from transformers import AutoConfig, AutoTokenizer

    from configuration_causal2vec import Causal2VecConfig
    from modeling_causal2vec import build_tokenizer

    dec = dict(decoder or TINY_DECODER)
    enc = dict(encoder or TINY_ENCODER)
    tokenizers = []
    for part, values, offline in (("decoder", dec, default_decoder_path), ("encoder", enc, default_encoder_path)):
        named = values.pop("tokenizer", None)
        if named is not None and not Path(named).is_dir():  # never read as a Hub id
            raise FileNotFoundError(f"{part} tokenizer folder {named} does not exist")
        tokenizers.append(AutoTokenizer.from_pretrained(named or offline()))
    decoder_tokenizer, encoder_tokenizer = tokenizers
    dec.setdefault("vocab_size", len(decoder_tokenizer))
    enc.setdefault("vocab_size", len(encoder_tokenizer))
    for ids in (dec, enc):
        ids.setdefault("pad_token_id", 0)
    dec.setdefault("bos_token_id", decoder_tokenizer.bos_token_id)
    dec.setdefault("eos_token_id", decoder_tokenizer.eos_token_id)
    config = Causal2VecConfig(decoder=AutoConfig.for_model(**dec), encoder=AutoConfig.for_model(**enc), **config_kwargs)
    torch.manual_seed(seed)
    model = Causal2VecModel(config).to(DTYPES[dtype])
    model.tokenizer = build_tokenizer(config, decoder_tokenizer, encoder_tokenizer)
    return model
