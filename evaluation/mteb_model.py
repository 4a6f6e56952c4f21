"""mteb (v2) wrapper: a Causal2Vec checkpoint (or a baseline) as an mteb encoder with its `ModelMeta`.

    import mteb
    from evaluation.mteb_model import Causal2VecMTEB
    model = Causal2VecMTEB("runs/default-init")
    mteb.evaluate(model, mteb.get_tasks(tasks=["STSBenchmark", "SciFact"]))  # needs internet for the data

Instructions: a table keyed by mteb task name (`MTEB_INSTRUCTIONS`, from `instructions.json`), else mteb's
default prompt for the task; they are formatted with the model's `prompt_template` and reach queries and
symmetric tasks (STS, classification), never retrieval documents.

Training datasets (`ModelMeta.training_datasets`) come from the checkpoint folder: the training files of a
`train/` export mapped to mteb task names where one exists (`TRAINING_FILE_TO_MTEB`), plus what mteb's registry
lists for the card's base models (an untrained `train init` checkpoint: the encoder's only).
"""

from __future__ import annotations

import hashlib
import json
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
    """The training data files a `train/` export was fine-tuned on, or None when the folder holds no training
    config (not fine-tuned here, e.g. `python -m train init`).

    From the card's metadata (`data_files`), else the config's `data` path (a file or a folder of *.jsonl,
    relative to the repository root as `train/` reads it)."""
    config = read_training_config(folder)
    if config is None:
        return None
    data_files = training_metadata(folder).get("data_files")
    if data_files:
        return list(data_files)
    data = config.get("data")
    if not data:
        return []
    path = Path(data).expanduser()
    path = path if path.is_absolute() else REPO_ROOT / path
    if path.is_dir():
        return sorted(p.name for p in path.glob("*.jsonl"))
    return [path.name]


def base_models(folder: str | Path) -> list[str]:
    """The Hub ids in the model card's `base_model` metadata; with no card, the default encoder's."""
    meta = read_card_metadata(folder)
    if meta is None:
        return [DEFAULT_ENCODER]
    bases = meta.get("base_model") or []
    return [bases] if isinstance(bases, str) else list(bases)


def inherited_datasets(names: list[str]) -> set[str]:
    """What mteb's registry says these pretrained models (e.g. the encoder) were trained on."""
    import mteb

    out: set[str] = set()
    for name in names:
        try:
            out |= set(mteb.get_model_meta(name).training_datasets or ())
        except (KeyError, ValueError):
            continue
    return out


def training_datasets(files: list[str] | None = None, bases: list[str] | None = None) -> set[str]:
    """mteb names of the data behind a checkpoint: its own training files (those with an mteb twin) plus what its
    pretrained parts (default: the default encoder) were trained on."""
    own = {TRAINING_FILE_TO_MTEB[Path(f).stem] for f in files or () if Path(f).stem in TRAINING_FILE_TO_MTEB}
    return own | inherited_datasets([DEFAULT_ENCODER] if bases is None else bases)


def folder_training_datasets(folder: str | Path) -> set[str]:
    """`training_datasets` of a checkpoint folder, from its training config, card and base models."""
    return training_datasets(training_files(folder), base_models(folder))


def build_meta(
    embedder: Embedder, name: str, revision: str | None = None, loader: Any = None, datasets: set[str] | None = None
) -> ModelMeta:
    """`ModelMeta` for what `embedder` embeds with; `datasets` default: the default encoder's."""
    config = getattr(embedder.model, "config", None)
    n_params = sum(p.numel() for p in embedder.model.parameters())
    return ModelMeta(
        loader=loader,
        name=name,
        revision=revision,
        release_date=None,
        languages=["eng-Latn"],
        n_parameters=n_params,
        memory_usage_mb=round(n_params * 4 / 2**20, 1),
        max_tokens=getattr(config, "decoder_max_length", None),
        embed_dim=embedder.truncate_dim or embedder.embedding_dim,
        license="apache-2.0",
        open_weights=True,
        public_training_code=None,
        public_training_data=None,
        framework=["PyTorch", "Transformers", "Sentence Transformers"],
        reference="https://arxiv.org/abs/2507.23386",
        similarity_fn_name="cosine",
        use_instructions=embedder.applies_instructions,
        training_datasets=training_datasets() if datasets is None else datasets,
        adapted_from=None,
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
        datasets = None
        if isinstance(model, (str, Path)):
            path = Path(model).resolve()
            name = name or f"causal2vec/{path.parent.name if path.name == 'model' else path.name}"  # <run>/model
            datasets = folder_training_datasets(path)
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
    from functools import partial

    wrapper = Causal2VecMTEB(path)
    meta = wrapper.mteb_model_meta
    return meta.model_copy(update={"loader": partial(Causal2VecMTEB, str(path))})


if __name__ == "__main__":  # print the ModelMeta of a checkpoint folder
    import sys

    print(json.dumps(Causal2VecMTEB(sys.argv[1]).mteb_model_meta.to_dict(), indent=2, default=str))
