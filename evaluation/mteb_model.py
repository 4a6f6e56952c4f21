"""mteb (v2) wrapper: a Causal2Vec checkpoint (or a baseline, or a SentenceTransformer folder) as an mteb encoder
with its `ModelMeta`: `mteb.evaluate(Causal2VecMTEB("runs/default/model"), mteb.get_tasks(tasks=["SciFact"]))`.

Instructions: a table keyed by mteb task name (from `instructions.json`), else mteb's default prompt for the task,
formatted with the model's `prompt_template`, for queries and symmetric tasks (STS, classification), never
retrieval documents. `ModelMeta.training_datasets` comes from the checkpoint folder (`training_datasets`).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from mteb.models.abs_encoder import AbsEncoder
from mteb.models.model_meta import ModelMeta
from mteb.types import PromptType

from causal2vec import REPO_ROOT
from causal2vec.card import read_card_metadata, read_training_config, training_metadata
from causal2vec.instructions import load_instructions
from causal2vec.parts import DEFAULT_ENCODER
from evaluation.embedder import Embedder

if TYPE_CHECKING:
    from mteb.abstasks.task_metadata import TaskMetadata
    from torch.utils.data import DataLoader

# mteb names of the project's training files (../shared/data/train/<stem>.jsonl; scifact.jsonl is SciFact's train
# split). snli, wikiqa, trecqa, squad_v2 and agnews have no mteb task of that name.
TRAINING_FILE_TO_MTEB = {"scifact": "SciFact"}


def mteb_instructions(instructions: dict[str, str] | None = None) -> dict[str, str]:
    """An instruction table keyed by local task name (default: the shipped one), keyed by mteb task name instead
    (`evaluation.tasks.LOCAL_NAMES`: the official twins' and the local mteb tasks')."""
    from evaluation.tasks import LOCAL_NAMES

    instructions = load_instructions() if instructions is None else instructions
    return {LOCAL_NAMES[k]: v for k, v in instructions.items() if k in LOCAL_NAMES}


def training_files(folder: str | Path) -> list[str] | None:
    """The training files a `train/` export was fine-tuned on (the card's `data_files`, else its config's `data`: a
    file or a folder of *.jsonl, relative to the repository root); None without a training config (`train init`)."""
    config = read_training_config(folder)
    if config is None:
        return None
    if data_files := training_metadata(folder).get("data_files"):
        return list(data_files)
    if not config.get("data"):
        return []
    path = Path(config["data"]).expanduser()
    path = path if path.is_absolute() else REPO_ROOT / path
    return sorted(p.name for p in path.glob("*.jsonl")) if path.is_dir() else [path.name]


def training_datasets(folder: str | Path | None = None) -> set[str]:
    """mteb names of the data behind a checkpoint folder: its training files that have an mteb twin, plus what
    mteb's registry lists for its base models (the card's `base_model`; no card or no folder: the default
    encoder's)."""
    import mteb

    meta = read_card_metadata(folder) if folder is not None else None
    bases = [DEFAULT_ENCODER] if meta is None else meta.get("base_model") or []
    files = (training_files(folder) if folder is not None else None) or []
    out = {TRAINING_FILE_TO_MTEB[Path(f).stem] for f in files if Path(f).stem in TRAINING_FILE_TO_MTEB}
    for name in [bases] if isinstance(bases, str) else bases:
        with contextlib.suppress(KeyError, ValueError):  # not in mteb's registry
            out |= set(mteb.get_model_meta(name).training_datasets or ())
    return out


def build_meta(embedder: Embedder, name: str, revision: str | None, datasets: set[str] | None = None) -> ModelMeta:
    """`ModelMeta` for what `embedder` embeds with; `datasets` default: the default encoder's."""
    n_params = sum(p.numel() for p in embedder.model.parameters())
    unknown = dict.fromkeys(("loader", "release_date", "public_training_code", "public_training_data", "adapted_from"))
    return ModelMeta(
        **unknown,
        name=name,
        revision=revision,
        languages=["eng-Latn"],
        n_parameters=n_params,
        memory_usage_mb=round(n_params * 4 / 2**20, 1),
        max_tokens=getattr(getattr(embedder.model, "config", None), "decoder_max_length", None),
        embed_dim=embedder.truncate_dim or embedder.embedding_dim,
        license="apache-2.0",
        open_weights=True,
        framework=["PyTorch", "Transformers", "Sentence Transformers"],
        reference="https://arxiv.org/abs/2507.23386",
        similarity_fn_name="cosine",
        use_instructions=embedder.applies_instructions,
        training_datasets=training_datasets() if datasets is None else datasets,
    )


class Causal2VecMTEB(AbsEncoder):
    """mteb encoder over an `Embedder` (a Causal2Vec checkpoint, a baseline of it or a SentenceTransformer folder,
    with its dtype, batch size, `truncate_dim` and embedding cache), built from a folder path, a loaded model or an
    Embedder. Queries and symmetric tasks get the task's instruction (`instructions`, keyed by mteb task name, else
    mteb's default prompt for the task, or none without `default_prompts`), retrieval documents none."""

    def __init__(
        self,
        model: str | Path | Any,
        name: str | None = None,
        revision: str | None = None,
        instructions: dict[str, str] | None = None,
        dtype: str = "fp32",
        device: str | None = None,
        default_prompts: bool = True,
        **kwargs: Any,
    ):
        datasets = None  # the default encoder's
        if isinstance(model, (str, Path)):
            path = Path(model).resolve()
            name = name or f"causal2vec/{path.parent.name if path.name == 'model' else path.name}"  # <run>/model
            datasets = training_datasets(path)
            model = Embedder.from_path(path, dtype=dtype, device=device, show_progress_bar=False, **kwargs)
        elif not isinstance(model, Embedder):
            model = Embedder(model, dtype=dtype, show_progress_bar=False, **kwargs)
        self.embedder = model
        self.model = model.model
        self.prompts_dict = mteb_instructions() if instructions is None else instructions
        self.default_prompts = default_prompts
        # one revision per model and setting that changes the vectors: mteb reuses a result by name and revision
        settings = f"{model.model_id}|{model.dtype}|{model.truncate_dim}|{model.use_instructions}"
        revision = revision or hashlib.sha256(settings.encode()).hexdigest()[:12]
        self.mteb_model_meta = build_meta(model, name or "causal2vec/in-memory", revision, datasets=datasets)

    def instruction(self, task_metadata: TaskMetadata, prompt_type: PromptType | None) -> str | None:
        """The task's instruction for this side (None: a document, or no instruction)."""
        if prompt_type == PromptType.document:
            return None
        if not self.default_prompts and task_metadata.name not in self.prompts_dict:
            return None
        return self.get_instruction(task_metadata, prompt_type) or None

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
        """Embed every text of `inputs` with the task's instruction for this side (`instruction`)."""
        texts = [text for batch in inputs for text in batch["text"]]
        instruction = self.instruction(task_metadata, prompt_type)
        return self.embedder.embed(texts, instruction, desc=f"{task_metadata.name} {hf_split}")

    def get_task_instruction(self, task_metadata: TaskMetadata, prompt_type: PromptType | None) -> str:
        """What precedes a text of this task and side (the embedder's prompt: the model's template, or a
        SentenceTransformer's own prompt)."""
        return self.embedder.prompt(self.instruction(task_metadata, prompt_type))


def meta_for_folder(path: str | Path) -> ModelMeta:
    """A `ModelMeta` whose `load_model()` builds `Causal2VecMTEB` for the folder (for `mteb.evaluate(meta, ...)`)."""
    meta = Causal2VecMTEB(path).mteb_model_meta
    return meta.model_copy(update={"loader": functools.partial(Causal2VecMTEB, str(path))})


if __name__ == "__main__":  # print the ModelMeta of a checkpoint folder: python -m evaluation.mteb_model FOLDER
    import json
    import sys

    print(json.dumps(Causal2VecMTEB(sys.argv[1]).mteb_model_meta.to_dict(), indent=2, default=str))
