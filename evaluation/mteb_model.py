"""mteb (v2) wrapper: a Causal2Vec checkpoint (or a baseline) as an mteb encoder with its `ModelMeta`.

    import mteb
    from evaluation.mteb_model import Causal2VecMTEB
    model = Causal2VecMTEB("runs/default-init")
    mteb.evaluate(model, mteb.get_tasks(tasks=["STSBenchmark", "SciFact"]))  # needs internet for the data

Instructions: a table keyed by mteb task name (`MTEB_INSTRUCTIONS`, from `instructions.json`), else mteb's
default prompt for the task; they are formatted with the model's `prompt_template` and reach queries and
symmetric tasks (STS, classification), never retrieval documents.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from mteb.models.abs_encoder import AbsEncoder
from mteb.models.model_meta import ModelMeta
from mteb.types import PromptType

from evaluation.cache import folder_fingerprint
from evaluation.embedder import DTYPES, load_model
from evaluation.tasks import load_instructions

if TYPE_CHECKING:
    from mteb.abstasks.task_metadata import TaskMetadata
    from torch.utils.data import DataLoader

ENCODER_NAME = "sentence-transformers/all-MiniLM-L6-v2"
# mteb names of the data a fine-tuned checkpoint of this project sees (train/scifact.jsonl is SciFact's train
# split); SNLI, WikiQA, TrecQA, SQuAD v2 and AG News pairs have no mteb task of that name.
PROJECT_TRAINING_DATASETS = {"SciFact"}
_LOCAL_TO_MTEB = {"stsb": "STSBenchmark", "scifact": "SciFact"}


def mteb_instructions() -> dict[str, str]:
    """The shipped instruction table keyed by mteb task name (where the local task has an mteb twin)."""
    local = load_instructions()
    return {_LOCAL_TO_MTEB[k]: v for k, v in local.items() if k in _LOCAL_TO_MTEB}


def training_datasets(encoder_name: str = ENCODER_NAME) -> set[str]:
    """The project's training data plus what the pretrained encoder was trained on, per mteb's own registry."""
    import mteb

    try:
        inherited = mteb.get_model_meta(encoder_name).training_datasets or set()
    except (KeyError, ValueError):
        inherited = set()
    return set(PROJECT_TRAINING_DATASETS) | set(inherited)


def build_meta(model: Any, name: str, revision: str | None = None, loader: Any = None) -> ModelMeta:
    """`ModelMeta` for a Causal2Vec model (or baseline) object."""
    config = model.config
    n_params = sum(p.numel() for p in model.parameters())
    return ModelMeta(
        loader=loader,
        name=name,
        revision=revision,
        release_date=None,
        languages=["eng-Latn"],
        n_parameters=n_params,
        memory_usage_mb=round(n_params * 4 / 2**20, 1),
        max_tokens=getattr(config, "decoder_max_length", None),
        embed_dim=config.embedding_dim,
        license="apache-2.0",
        open_weights=True,
        public_training_code=None,
        public_training_data=None,
        framework=["PyTorch", "Transformers", "Sentence Transformers"],
        reference="https://arxiv.org/abs/2507.23386",
        similarity_fn_name="cosine",
        use_instructions=True,
        training_datasets=training_datasets(),
        adapted_from=None,
    )


class Causal2VecMTEB(AbsEncoder):
    """mteb encoder around a Causal2Vec model (a folder path or a loaded model / baseline module)."""

    def __init__(
        self,
        model: str | Path | Any,
        name: str | None = None,
        revision: str | None = None,
        instructions: dict[str, str] | None = None,
        dtype: str = "fp32",
        device: str | None = None,
        **kwargs: Any,
    ):
        if isinstance(model, (str, Path)):
            path = Path(model)
            revision = revision or folder_fingerprint(path)[:12]
            name = name or f"causal2vec/{path.resolve().name}"
            model = load_model(path, device)
        self.model = model
        self.dtype = DTYPES[dtype]
        self.device = device
        self.instruction_template = model.config.prompt_template.replace("{}", "{instruction}")
        self.prompts_dict = mteb_instructions() if instructions is None else instructions
        self.mteb_model_meta = build_meta(model, name or "causal2vec/in-memory", revision)

    def encode(
        self,
        inputs: DataLoader,
        *,
        task_metadata: TaskMetadata,
        hf_split: str,
        hf_subset: str,
        prompt_type: PromptType | None = None,
        **kwargs: Any,
    ) -> np.ndarray:
        """Embed every text of `inputs`; documents get no instruction, queries and symmetric tasks do."""
        instruction = ""
        if prompt_type != PromptType.document:
            instruction = self.get_task_instruction(task_metadata, prompt_type)
        texts = [text for batch in inputs for text in batch["text"]]
        with torch.inference_mode():
            return self.model.encode(
                texts,
                prompt=instruction or None,
                batch_size=kwargs.get("batch_size", 32),
                show_progress_bar=kwargs.get("show_progress_bar", False),
                dtype=self.dtype,
                device=self.device,
            )


def meta_for_folder(path: str | Path) -> ModelMeta:
    """A `ModelMeta` whose `load_model()` builds `Causal2VecMTEB` for the folder (for `mteb.evaluate(meta, ...)`)."""
    from functools import partial

    wrapper = Causal2VecMTEB(path)
    meta = wrapper.mteb_model_meta
    return meta.model_copy(update={"loader": partial(Causal2VecMTEB, str(path))})


if __name__ == "__main__":  # print the ModelMeta of a checkpoint folder
    import sys

    print(json.dumps(Causal2VecMTEB(sys.argv[1]).mteb_model_meta.to_dict(), indent=2, default=str))
