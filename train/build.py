"""`python -m train init`: assemble an untrained Causal2Vec checkpoint from a decoder and an encoder (by default, or
as a train config describes it)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from causal2vec.dtypes import DTYPES
from causal2vec.parts import (
    DEFAULT_ENCODER,
    decoder_folder,
    decoder_name,
    default_decoder_path,
    default_encoder_path,
    offline_decoder,
)
from hub_causal2vec import CARD_FILE, NOTICE_FILE
from modeling_causal2vec import Causal2VecModel
from train.config import TrainConfig, flatten


def check_output(path: str | Path, overwrite: bool) -> Path:
    """Refuse an output `path` that is a file, or a non-empty folder unless `overwrite`; returns it as a Path."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out} is not empty; pass --overwrite to replace what is in it")
    return out


def prepare_output(path: str | Path, overwrite: bool) -> Path:
    """Return `path` as an empty folder; refuse to touch a non-empty one unless `overwrite`."""
    out = check_output(path, overwrite)
    if out.is_dir() and any(out.iterdir()):
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    return out


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


def init(output: str, cfg: TrainConfig, overwrite: bool = False, reuse: bool = False) -> tuple[Path, bool]:
    """Write the untrained checkpoint that `cfg` (a train config; only its `model` section and `document_prompt`
    are read) starts from, with a model card naming its base models; returns (folder, written).

    `reuse`: a folder that already holds exactly that checkpoint (`checkpoint_differences`) is kept as it is
    (written False); one that holds another, or something else, is refused, naming what differs.
    """
    out = Path(output)
    if reuse and out.is_dir() and any(out.iterdir()):
        if not (out / "config.json").is_file():
            raise FileExistsError(f"{out} is not empty and holds no checkpoint (no config.json): move it away")
        model, base_models = build(cfg)
        if differences := checkpoint_differences(out, model, base_models):
            raise FileExistsError(
                f"{out} holds another checkpoint than this config builds ({'; '.join(differences)}): move it away"
            )
        return out, False
    out = check_output(output, overwrite)
    model, base_models = build(cfg)  # before touching `output`: a bad config leaves it as it was
    save_checkpoint(prepare_output(out, overwrite), model, base_models)
    return out, True


def save_checkpoint(out: Path, model: Causal2VecModel, base_models: list[str]) -> None:
    """What `init` writes: the checkpoint, and a model card naming its base models."""
    from causal2vec.card import write_model_card

    model.save_pretrained(out)
    write_model_card(out, model.config, base_models=base_models)


def checkpoint_differences(folder: Path, model: Causal2VecModel, base_models: list[str]) -> list[str]:
    """How the checkpoint in `folder` differs from what `save_checkpoint` writes: its config fields (both
    values), its tensors (bit for bit; the largest difference), then every other file written (remote code,
    tokenizer and sentence-transformers files with the prompts), byte for byte; not the card or the NOTICE (both take
    the user's edits; an older folder may lack the NOTICE). [] if the same."""
    import json
    import tempfile

    with tempfile.TemporaryDirectory(dir=folder.parent) as tmp:  # beside `folder`, not in a small /tmp
        made = Path(tmp)
        save_checkpoint(made, model, base_models)
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

    `decoder`/`encoder` are config dicts with a `model_type` (defaults: tiny llama and bert); vocabulary sizes
    are taken from the SmolLM2 and MiniLM tokenizers; weights are cast to `dtype` (bf16 | fp32). Used by
    `train/configs/tiny.yaml` and the tests.
    """
    import torch
    from transformers import AutoConfig, AutoTokenizer

    from configuration_causal2vec import Causal2VecConfig
    from modeling_causal2vec import build_tokenizer

    decoder_tokenizer = AutoTokenizer.from_pretrained(default_decoder_path())
    encoder_tokenizer = AutoTokenizer.from_pretrained(default_encoder_path())
    dec = dict(decoder or TINY_DECODER)
    enc = dict(encoder or TINY_ENCODER)
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


def build(cfg: TrainConfig) -> tuple[Causal2VecModel, list[str]]:
    """The untrained Causal2Vec model a train config describes, and the names of its base models (for the card)."""
    m = cfg.model
    fields = dict(m.config)
    if cfg.document_prompt is not None:  # in the model's config: the tokenizer routes it to the decoder, the export
        fields["document_prompt"] = cfg.document_prompt  # records it
    if m.random:
        model = build_random(m.decoder, m.encoder, seed=m.seed, dtype=m.dtype, **fields)
        return model, [f"random {model.config.decoder.model_type}", f"random {model.config.encoder.model_type}"]
    model = build_model(m.decoder, m.encoder, m.gguf_file, seed=m.seed, dtype=m.dtype, **fields)
    return model, [decoder_name(m.decoder), m.encoder or DEFAULT_ENCODER]
