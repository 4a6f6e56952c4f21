"""The model card of a checkpoint that `python -m train` writes (init and export): `hub_causal2vec.write_card` with
the base models and what is known of training as front-matter data, and the task instructions as named prompts in
the sentence-transformers config. Read the data back with `read_card_metadata` (or `ModelCard.load(path).data`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from causal2vec.instructions import task_prompts
from hub_causal2vec import CARD_FILE, METADATA_KEY, card_metadata, write_card, write_sentence_transformers_files


def write_model_card(
    folder: Path,
    config: Any,
    base_models: list[str],
    training: dict[str, Any] | None = None,
    data_files: dict[str, int | str] | None = None,
    loss_curve: str | None = None,
) -> Path:
    """Write `folder/README.md` (no evaluation yet: `python -m evaluation run --card` adds it) and name the task
    prompts in `config_sentence_transformers.json`."""
    meta = card_metadata(base_models, training=training, data_files=data_files, loss_curve=loss_curve)
    path = write_card(folder, config, meta)
    write_sentence_transformers_files(folder, config, task_prompts(config))
    return path


TRAINING_CONFIG_FILE = "training_config.yaml"  # an export's copy of its train config (train/export.py)


def read_training_config(folder: str | Path) -> dict[str, Any] | None:
    """The train config an export was fine-tuned with, or None for a checkpoint not trained here (`train init`)."""
    import yaml

    path = Path(folder) / TRAINING_CONFIG_FILE
    return (yaml.safe_load(path.read_text()) or {}) if path.is_file() else None


def read_card_metadata(folder: str | Path) -> dict[str, Any] | None:
    """The card's Hub metadata (front matter) as a dict, or None when the folder has no card."""
    from huggingface_hub import ModelCard

    path = Path(folder) / CARD_FILE
    return ModelCard.load(path).data.to_dict() if path.is_file() else None


def training_metadata(folder: str | Path) -> dict[str, Any]:
    """The `causal2vec` field of the card (base models, training, data files, evaluation); {} without one."""
    return (read_card_metadata(folder) or {}).get(METADATA_KEY) or {}
