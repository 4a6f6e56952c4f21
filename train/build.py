"""`python -m train init`: the untrained Causal2Vec checkpoint a train config starts from (`causal2vec.assemble`
builds it); the output-folder rules every command that writes a folder follows."""

from __future__ import annotations

import shutil
from pathlib import Path

from causal2vec.assemble import build_model, build_random, checkpoint_differences, write_checkpoint
from causal2vec.parts import DEFAULT_ENCODER, decoder_name
from modeling_causal2vec import Causal2VecModel
from train.config import TrainConfig


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
    write_checkpoint(prepare_output(out, overwrite), model, base_models)
    return out, True


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
