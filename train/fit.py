"""`python -m train fit`: contrastive fine-tuning on sentence-transformers' `SentenceTransformerTrainer` (the
Hugging Face `Trainer` and accelerate underneath: processes, checkpoints, resume, bf16, gradient accumulation, DDP
launchers, logging integrations), on one process or under torchrun / accelerate launch.

What the engine has no mechanism for is added here as small hooks, each in one place:
- `Causal2VecModule`: a Causal2Vec model, or a baseline sharing its parts, as sentence-transformers' one input module.
- data (`train/data.py`): a `DatasetDict`, one dataset per file and negative count (a batch never mixes two;
  `NO_DUPLICATES` batches), prompts applied per row (instructions differ per row).
- loss (`train/loss.py`): sentence-transformers' ranking losses at `1 / temperature`, gathered across processes.
- `Causal2VecTrainer`: per-part AdamW groups and `lr_lambda` schedules; checkpoints hold the trainable weights only.
- `StepGuard`: connector-only steps, the clip (global or per part) and the NaN/inf stop, between backward and step.
- `MetricsFile`: one `metrics.jsonl` line per step.

Output folder: `train_config.yaml`, `metrics.jsonl`, `checkpoints/checkpoint-N/` (the Trainer's), `model/` (export).
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import yaml
from accelerate.utils import parse_flag_from_env, save_fsdp_optimizer
from datasets import DatasetDict
from safetensors.torch import load_file
from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer, SentenceTransformerTrainingArguments
from sentence_transformers.base.modules import InputModule
from sentence_transformers.base.sampler import BatchSamplers, MultiDatasetBatchSamplers
from sentence_transformers.sentence_transformer.evaluation import EmbeddingSimilarityEvaluator
from torch import nn
from transformers import TrainerCallback
from transformers.trainer import SCHEDULER_NAME

from causal2vec.baselines import build_baseline
from causal2vec.dtypes import DTYPES
from causal2vec.instructions import load_instructions
from causal2vec.tsv import read_sts
from train.build import build
from train.checkpoint import (
    TRAINABLE,
    assign_trainable,
    last_checkpoint,
    load_fsdp_optimizer,
    resume_point,
    save_trainable,
    step_of,
    trainable_weights,
)
from train.config import TrainConfig
from train.data import jsonl_files, load_data, streamed_dataset, training_datasets
from train.export import export, read_metrics, truncate_metrics
from train.loss import InfoNCE, check_prefix_terms
from train.trainable import TrainingDiverged, clip_gradients, lr_lambda, param_groups, set_trainable

logger = logging.getLogger("train")
EVAL_NAME = "sts-dev"  # the evaluator's name: its main score is logged as `eval_sts-dev_spearman_cosine`
# TrainingArguments fields a train config owns under its own names: set those keys, not `trainer:` ones
OWNED_ARGS = {
    **{key: key for key in ("seed", "max_grad_norm", "warmup_steps", "weight_decay", "gradient_checkpointing")},
    "learning_rate": "lr_decoder / lr_connector / lr_encoder",
    **dict.fromkeys(("max_steps", "num_train_epochs"), "steps"),
    "per_device_train_batch_size": "batch_size (global, over all processes)",
    "data_seed": "seed",
    **dict.fromkeys(("bf16", "fp16"), "dtype"),
    "activation_checkpointing": "gradient_checkpointing",  # trainable_model turns it on in decoder and encoder
    "warmup_ratio": "warmup_steps",
    "lr_scheduler_type": "schedule",
    "output_dir": "--output",
    "save_steps": "save_every",
    "save_total_limit": "keep_checkpoints",
    "prompts": "the rows' instructions and document_prompt",
    **dict.fromkeys(("eval_strategy", "eval_steps"), "eval_every"),
    "batch_sampler": "(fixed: no duplicates in a batch)",
    "multi_dataset_batch_sampler": "(fixed: one source per batch)",
    "use_cpu": "(none: the GPU when there is one)",
}
# fields the trainer would silently ignore or that break what it guarantees (one metrics line per step, resume,
# whole batches, the per-part optimizer, a Hub-ready export): refused with the reason
REFUSED_ARGS = {
    **dict.fromkeys(("logging_steps", "logging_strategy", "logging_nan_inf_filter"), "metrics.jsonl logs every step"),
    **dict.fromkeys(("save_strategy", "save_only_model", "ignore_data_skip"), "--resume needs whole checkpoints"),
    "dataloader_drop_last": "every batch is whole (batch_size)",
    **dict.fromkeys(
        ("optim", "optim_args", "adam_beta1", "adam_beta2", "adam_epsilon", "lr_scheduler_kwargs"),
        "the optimizer is AdamW per part with the config's schedule (train/trainable.py)",
    ),
    **dict.fromkeys(
        ("push_to_hub", "hub_model_id", "hub_strategy"),
        "checkpoints hold the trainable weights only: upload the export, `hf upload NAME OUTPUT/model .`",
    ),
    "deepspeed": "ZeRO keeps gradients in its own partitioned buffers, out of reach of the per-part clip, the "
    "connector-only steps and the non-finite check (StepGuard); use FSDP (fsdp: true, FSDP2)",
}


FSDP1_REFUSED = (
    "use version 2: FSDP1 is deprecated in torch and accelerate, and the checkpoints (gathered trainable weights) "
    "and resume here are built and tested on FSDP2's DTensor parameters"
)
NOT_INPUTS = {"prompt_length", "sentence_embedding", "token_embeddings", "dataset_name"}  # what the trainer adds


class Causal2VecModule(InputModule):
    """Any module with a `tokenizer` and a forward giving `.sentence_embedding` (a Causal2Vec model, a baseline
    sharing its parts) as sentence-transformers' input module. Texts arrive with their prompts (the tokenizer
    splits a query prompt off for the decoder); `max_length` cuts them while training."""

    def __init__(self, model: nn.Module, max_length: int | None = None) -> None:
        super().__init__()
        self.model = model
        self.max_length = max_length

    @property
    def tokenizer(self) -> Any:
        return self.model.tokenizer

    def get_embedding_dimension(self) -> int:
        return self.model.config.embedding_dim  # a baseline's config says its own

    def preprocess(self, inputs: Any, prompt: str | None = None, **kwargs: Any) -> dict[str, Any]:
        texts = [(prompt or "") + text for text in inputs]
        options = {"max_length": self.max_length} if self.max_length else {}
        if getattr(self.model.config, "model_type", None) == "causal2vec":  # baselines' tokenizers have no encoder
            options["short_encoder_keys"] = True  # the names and widths the trainer's batches and GradCache need
        return dict(self.model.tokenizer(texts, return_tensors="pt", **options))

    def forward(self, features: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        inputs = {k: v for k, v in features.items() if k not in NOT_INPUTS}  # the model takes either key name
        features["sentence_embedding"] = self.model(**inputs).sentence_embedding.float()
        return features

    def save(self, output_path: str, *args: Any, **kwargs: Any) -> None:
        save_trainable(self.model, Path(output_path))


class Causal2VecTrainer(SentenceTransformerTrainer):
    """The Trainer with this recipe's optimizer (AdamW groups per part, each with its learning rate and
    `lr_lambda` schedule) and checkpoints of the trainable weights only (a frozen 7B base is not copied per
    checkpoint)."""

    def __init__(self, *args: Any, cfg: TrainConfig, module: nn.Module, info_nce: InfoNCE, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.cfg, self.module, self.info_nce = cfg, module, info_nce

    def compute_loss(self, model: Any, inputs: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        self.info_nce.sources.append(inputs.get("dataset_name"))  # the micro-batch's file, for metrics and errors
        return super().compute_loss(model, inputs, *args, **kwargs)

    def create_optimizer(self, model: Any = None) -> torch.optim.Optimizer:
        if self.optimizer is None:
            self.optimizer = torch.optim.AdamW(param_groups(self.module, self.cfg))
        return self.optimizer

    def create_scheduler(self, num_training_steps: int, optimizer: Any = None) -> Any:
        if self.lr_scheduler is None:
            optimizer = optimizer or self.optimizer
            schedules = [lr_lambda(self.cfg, g["name"]) for g in optimizer.param_groups]
            self.lr_scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedules)
        return self.lr_scheduler

    def _save(self, output_dir: str | None = None, state_dict: Any = None) -> None:
        if not self.args.should_save:  # the Trainer calls it on every process; one writes
            return
        folder = Path(output_dir or self.args.output_dir)
        folder.mkdir(parents=True, exist_ok=True)
        save_trainable(self.module, folder, state_dict)  # under FSDP: the weights save_model gathered
        torch.save(self.args, folder / "training_args.bin")  # as the Trainer's own _save does

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        if not self.is_fsdp_enabled:
            return super().save_model(output_dir, _internal_call)
        # under FSDP (full or sharded state dicts alike) every process gathers the trainable parameters only: the
        # Trainer's own gathers the whole model (frozen base too) with FULL_STATE_DICT, and saves none with SHARDED
        self._save(output_dir, trainable_weights(self.module))
        return None

    def _save_optimizer_and_scheduler(self, output_dir: str) -> None:
        if not self.is_fsdp_enabled:
            return super()._save_optimizer_and_scheduler(output_dir)
        # under FSDP the Trainer writes the whole model here as well (pytorch_model_fsdp, frozen weights and all):
        # a checkpoint's weights are the trainable ones (_save); its optimizer and scheduler, as the Trainer's
        plugin = self.accelerator.state.fsdp_plugin
        save_fsdp_optimizer(plugin, self.accelerator, self.optimizer, self.model, output_dir)
        if self.args.should_save:
            torch.save(self.lr_scheduler.state_dict(), Path(output_dir) / SCHEDULER_NAME)
        return None

    def _load_optimizer_and_scheduler(self, checkpoint: str | None) -> None:
        if checkpoint is None or not self.is_fsdp_enabled:
            return super()._load_optimizer_and_scheduler(checkpoint)
        load_fsdp_optimizer(self.accelerator, self.optimizer, self.model, Path(checkpoint))
        if step_of(Path(checkpoint)) <= self.cfg.connector_only_steps:
            # FSDP's load gives every parameter a state (Adam at step 1, zero moments); during the connector-only
            # steps the other parts have none yet, as in an uninterrupted run: theirs is dropped
            for group in self.optimizer.param_groups:
                if group["name"] != "connector":
                    for param in group["params"]:
                        self.optimizer.state.pop(param, None)
        self.lr_scheduler.load_state_dict(torch.load(Path(checkpoint) / SCHEDULER_NAME, weights_only=True))
        return None

    def training_step(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        loss = super().training_step(*args, **kwargs)
        if not torch.isfinite(loss):  # before the update (StepGuard also stops a non-finite gradient, on every rank)
            at = f"step {self.state.global_step + 1} (batch from {self.info_nce.sources[-1] or 'the stream'})"
            raise TrainingDiverged(f"loss {loss.item()} at {at}: update not applied")
        return loss

    def _load_best_model(self) -> None:
        """sentence-transformers logs a failed load and goes on with the last weights; here it is an error."""
        self._load_from_checkpoint(self.state.best_model_checkpoint)

    def _load_from_checkpoint(self, checkpoint_path: str, model: Any = None) -> None:
        assign_trainable(self.module, load_file(Path(checkpoint_path) / TRAINABLE), checkpoint_path)


class StepGuard(TrainerCallback):
    """Between the backward and the optimizer step (the Trainer's own clip is off): during `connector_only_steps`
    the other parts' gradients are dropped (out of the norm and of Adam's moments); then the clip, over all
    parameters or part by part; a non-finite loss or norm stops the run before the update, and so do non-finite
    weights after it. The norms go to `MetricsFile`."""

    def __init__(self, cfg: TrainConfig) -> None:
        self.cfg = cfg
        self.norms: tuple[float, dict[str, float]] = (0.0, {})

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        # a resumed run's TrainerState comes from the checkpoint: today's save_every / eval_every win
        state.save_steps, state.eval_steps, state.logging_steps = args.save_steps, args.eval_steps, 1

    def on_pre_optimizer_step(self, args: Any, state: Any, control: Any, optimizer: Any = None, **kwargs: Any) -> None:
        step = state.global_step + 1
        if step <= self.cfg.connector_only_steps:
            for group in optimizer.param_groups:
                if group["name"] != "connector":
                    for param in group["params"]:
                        param.grad = None
        total, parts = clip_gradients(optimizer.param_groups, self.cfg.max_grad_norm, self.cfg.clip == "per_part")
        if not torch.isfinite(total):
            raise TrainingDiverged(f"grad norm {total.item()} at step {step}: update not applied")
        self.norms = (total.item(), parts)

    def on_optimizer_step(self, args: Any, state: Any, control: Any, optimizer: Any = None, **kwargs: Any) -> None:
        params = [p for g in optimizer.param_groups for p in g["params"]]
        if not torch.stack([p.isfinite().all() for p in params]).all():  # one device sync
            raise TrainingDiverged(f"non-finite weights after the update of step {state.global_step + 1}")


class MetricsFile(TrainerCallback):
    """One `metrics.jsonl` line per step (rank 0): loss, grad norms before clipping, learning rate per part,
    pairs per second, train time (sum of step times) and wall time since the first start, over resumes."""

    def __init__(
        self, path: Path, guard: StepGuard, loss: InfoNCE, batch_size: int, before: tuple[float, float]
    ) -> None:
        self.path, self.guard, self.loss, self.batch_size = path, guard, loss, batch_size
        self.train_time, self.wall_before = before
        self.start = time.perf_counter()
        self.t0 = self.start

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.t0 = time.perf_counter()  # a step's time runs from the last one's log: its batch's loading included

    def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kwargs: Any) -> None:
        if logs and "loss" in logs and dist.is_initialized():  # every process logs the step: tokens over all of them
            tokens = torch.tensor(float(self.loss.tokens), device=args.device)
            dist.all_reduce(tokens)
            self.loss.tokens = int(tokens.item())
        if not state.is_world_process_zero or not logs:
            self.loss.tokens, self.loss.sources = 0, []
            return
        scores = {k.removeprefix("eval_"): v for k, v in logs.items() if k.startswith("eval_")}
        if scores:  # the evaluator's line: its scores at this step
            with open(self.path, "a") as f:
                f.write(json.dumps({"step": state.global_step, "eval": scores}) + "\n")
            self.t0 = time.perf_counter()
            return
        if "loss" not in logs:
            return
        dt = time.perf_counter() - self.t0
        self.train_time += dt
        optimizer = kwargs["optimizer"]
        sources = list(dict.fromkeys(self.loss.sources))  # each micro-batch holds one file (none when streamed)
        record = {
            "step": state.global_step,
            "loss": logs["loss"],
            "grad_norm": self.guard.norms[0],
            "grad_norms": self.guard.norms[1],
            "lr": {g["name"]: g["lr"] for g in optimizer.param_groups},
            "source": sources[0] if len(sources) == 1 else sources,  # a list: accumulated micro-batches differ
            "pairs_per_s": self.batch_size * args.gradient_accumulation_steps / dt,
            "tokens_per_s": self.loss.tokens / dt,  # decoder tokens, all processes
            "train_time_s": self.train_time,
            "wall_time_s": self.wall_before + time.perf_counter() - self.start,
        }
        self.loss.tokens, self.loss.sources = 0, []
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        self.t0 = time.perf_counter()


def sts_evaluator(cfg: TrainConfig, config: Any) -> Any:
    """sentence-transformers' STS evaluator on `cfg.eval_data` (Spearman of the cosines), both sides with the STS
    instruction as the query prompt, as the evaluation embeds STS; None when `eval_every` is 0."""
    if not cfg.eval_every:
        return None
    path = cfg.data_path("eval_data")
    sts, prompt = read_sts(path), config.query_prompt(load_instructions()["stsb"])
    first, second = ([prompt + t for t in side] for side in (sts.sentences1, sts.sentences2))
    return EmbeddingSimilarityEvaluator(first, second, sts.scores, main_similarity="cosine", name=EVAL_NAME)


def training_arguments(cfg: TrainConfig, output: Path, processes: int) -> SentenceTransformerTrainingArguments:
    """The Trainer's arguments: the config's own keys mapped to their fields, then its `trainer:` block (any other
    field, as the Hugging Face docs say; one owned by a config key is an error naming that key)."""
    owned = sorted(set(cfg.trainer) & set(OWNED_ARGS))
    if owned:
        raise ValueError(f"trainer.{owned[0]}: set {OWNED_ARGS[owned[0]]} instead (the config's own key)")
    if parse_flag_from_env("ACCELERATE_USE_DEEPSPEED"):  # an accelerate config's DeepSpeed: refused before it builds
        raise ValueError(f"DeepSpeed (accelerate config) is not available here: {REFUSED_ARGS['deepspeed']}")
    refused = sorted(set(cfg.trainer) & set(REFUSED_ARGS))
    if refused:
        raise ValueError(f"trainer.{refused[0]} is not available here: {REFUSED_ARGS[refused[0]]}")
    known = set(SentenceTransformerTrainingArguments.__dataclass_fields__)
    unknown = sorted(set(cfg.trainer) - known)
    if unknown:
        raise ValueError(f"unknown trainer key(s): {', '.join(unknown)} (SentenceTransformerTrainingArguments fields)")
    if cfg.batch_size % processes:
        raise ValueError(f"batch_size={cfg.batch_size} must be divisible by the number of processes ({processes})")
    accelerator = dict(cfg.trainer.get("accelerator_config") or {})
    accelerator.setdefault("split_batches", True)  # one global batch (one source) split over the processes
    fields = {
        "logging_steps": 1,
        "logging_nan_inf_filter": False,
        "report_to": [],
        "disable_tqdm": False,
        "save_strategy": "steps",
        "dataloader_drop_last": True,
        **cfg.trainer,
        "accelerator_config": accelerator,
        "metric_for_best_model": cfg.trainer.get("metric_for_best_model", f"eval_{EVAL_NAME}_spearman_cosine"),
        "greater_is_better": cfg.trainer.get("greater_is_better", True),
        "output_dir": str(output / "checkpoints"),
        "max_steps": cfg.steps,
        "per_device_train_batch_size": cfg.batch_size,
        "seed": cfg.seed,
        "data_seed": cfg.seed,
        "bf16": cfg.dtype == "bf16",
        "max_grad_norm": 0.0,  # StepGuard clips
        "save_steps": cfg.save_every,
        "save_total_limit": cfg.keep_checkpoints or None,
        "eval_strategy": "steps" if cfg.eval_every else "no",
        "eval_steps": cfg.eval_every or None,
        "batch_sampler": BatchSamplers.NO_DUPLICATES,
        "multi_dataset_batch_sampler": MultiDatasetBatchSamplers.PROPORTIONAL,
        "use_cpu": not torch.cuda.is_available(),
    }
    args = SentenceTransformerTrainingArguments(**fields)
    if args.fsdp and args.fsdp_plugin_args["fsdp_version"] != 2:  # fsdp_config read as transformers reads it
        raise ValueError(f"trainer.fsdp_config.version: {FSDP1_REFUSED}")  # before accelerate builds FSDP1
    return args


def trainable_model(cfg: TrainConfig, device: torch.device) -> tuple[nn.Module, nn.Module, Any, list[str]]:
    """The Causal2Vec model, the module that trains (it, or `causal2vec.baselines.build_baseline(cfg.baseline)`
    sharing its parts), the peft model (or None) and the base model names, trainable parameters set, on `device`."""
    model, bases = build(cfg)
    torch.manual_seed(cfg.seed)  # LoRA init: the same on every process
    module = build_baseline(cfg.baseline, model) if cfg.baseline else model
    peft_model = set_trainable(module, cfg)
    if cfg.gradient_checkpointing:
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    module.to(device).train()
    return model, module, peft_model, bases


def build_trainer(
    cfg: TrainConfig, output: Path, processes: int = 1, before: tuple[float, float] = (0.0, 0.0)
) -> tuple[Causal2VecTrainer, Any]:
    """The Trainer for `cfg` writing under `output`, and what the export needs: (model, peft model, base model
    names, {data label: rows})."""
    args = training_arguments(cfg, output, processes)
    model, module, peft_model, bases = trainable_model(cfg, args.device)
    check_prefix_terms(cfg, getattr(model.config, "pooling", None), module.config.embedding_dim)
    st = SentenceTransformer(modules=[Causal2VecModule(module, cfg.max_length)], device=str(args.device))
    if cfg.streaming:
        files = jsonl_files(cfg.data_path())
        data = streamed_dataset(cfg, model.config, files)
        counts = dict.fromkeys((f.name for f in files), "streamed")  # not counted: read as training goes
    else:
        rows, labels = load_data(cfg.data_path(), cfg.data)
        data = training_datasets(rows, cfg, model.config)
        counts = {labels[name]: len(r) for name, r in rows.items()}
    guard, loss = StepGuard(cfg), InfoNCE(st, cfg)
    trainer = Causal2VecTrainer(
        model=st,
        args=args,
        train_dataset=data,
        evaluator=sts_evaluator(cfg, model.config),
        # one loss per dataset, all the same: the trainer then tells which dataset each batch comes from
        loss=dict.fromkeys(data, loss) if isinstance(data, DatasetDict) else loss,
        callbacks=[guard, MetricsFile(output / "metrics.jsonl", guard, loss, cfg.batch_size, before)],
        cfg=cfg,
        module=module,
        info_nce=loss,
    )
    check_fsdp(trainer)
    return trainer, (model, peft_model, bases, counts)


def check_fsdp(trainer: Causal2VecTrainer) -> None:
    """FSDP asked for (`trainer.fsdp`, or an accelerate config) is FSDP2 and on, or an error: never a silent
    unsharded run (DeepSpeed, from either, is refused earlier, in `training_arguments`)."""
    if (trainer.args.fsdp or parse_flag_from_env("ACCELERATE_USE_FSDP")) and not trainer.is_fsdp_enabled:
        raise ValueError(
            f"FSDP (trainer.fsdp or an accelerate config): accelerate did not turn FSDP on "
            f"({trainer.accelerator.distributed_type}, {trainer.args.device}): it does on GPUs (or other "
            "accelerators) under torchrun / accelerate launch"
        )
    if not trainer.is_fsdp_enabled:
        return
    plugin = trainer.accelerator.state.fsdp_plugin
    if plugin.fsdp_version != 2:
        raise ValueError(f"FSDP version {plugin.fsdp_version} (fsdp_config.version or fsdp_version): {FSDP1_REFUSED}")
    if plugin.activation_checkpointing:
        raise ValueError(
            "FSDP activation_checkpointing wraps the layers and renames their parameters (the per-part groups and "
            "checkpoints go by name): set gradient_checkpointing: true instead (the models' own, the same saving)"
        )


def fit(cfg: TrainConfig, output: str | Path, resume: bool = False, overwrite: bool = False) -> Path:
    """Train per `cfg`, write checkpoints and metrics under `output`, export to `output/model`; returns that."""
    t_start = time.perf_counter()
    output = Path(output)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():  # torchrun / accelerate launch
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    rank, processes = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    ckpt = resume_point(cfg, output, resume, overwrite, rank, processes)
    metrics_path, before = output / "metrics.jsonl", (0.0, 0.0)
    if ckpt is not None and rank == 0:
        kept = truncate_metrics(metrics_path, step_of(ckpt))
        before = (kept[-1]["train_time_s"], kept[-1]["wall_time_s"]) if kept else before
    elif rank == 0:
        (output / "train_config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    trainer, (model, peft_model, bases, data_files) = build_trainer(cfg, output, processes, before)
    try:
        trainer.train(resume_from_checkpoint=str(ckpt) if ckpt else None)
    except TrainingDiverged as err:
        last = last_checkpoint(output)
        raise TrainingDiverged(f"{err}; stopped without saving it. Last checkpoint: {last or 'none'}") from None
    folder = output / "model"
    if trainer.is_fsdp_enabled:  # the trained weights are shards: gathered (every process), into a whole copy
        weights = trainable_weights(trainer.module)
        if trainer.is_world_process_zero():
            model, module, peft_model, bases = trainable_model(cfg, torch.device("cpu"))
            assign_trainable(module, weights, "the gathered FSDP weights")
    if trainer.is_world_process_zero():
        wall = before[1] + time.perf_counter() - t_start
        export_run(model, peft_model, cfg, bases, data_files, folder, processes, wall)
    if dist.is_initialized():  # every process waits for the export, then leaves the process group
        dist.barrier()
        dist.destroy_process_group()
    return folder


def export_run(
    model: nn.Module,
    peft_model: Any,
    cfg: TrainConfig,
    bases: list[str],
    data_files: dict[str, Any],
    folder: Path,
    processes: int,
    wall_time: float,
) -> Path:
    """Merge LoRA and write the Hub-ready folder, its card recording the run (wall time: over all resumes, from
    the start to the export; train time: the sum of step times)."""
    metrics = read_metrics(folder.parent / "metrics.jsonl")
    if peft_model is not None:  # LoRA merged into the decoder's weights, the plain decoder back on the model
        model.decoder = peft_model.merge_and_unload()
    model.to("cpu", DTYPES[cfg.model.dtype])
    training = {
        "steps": cfg.steps,
        "wall_time_s": round(wall_time, 1),
        "train_time_s": round(metrics[-1]["train_time_s"], 1) if metrics else 0.0,
        "final_loss": round(metrics[-1]["loss"], 4) if metrics else None,
        "processes": processes,
        **{k: v for k, v in cfg.to_dict().items() if k != "model"},
    }
    export(model, folder, cfg.to_dict(), bases, training=training, data_files=data_files, metrics=metrics)
    logger.info("exported %s (%d steps, %.0f s, final loss %s)", folder, cfg.steps, wall_time, training["final_loss"])
    return folder


def summary(output: Path) -> dict[str, Any]:
    """Steps, wall and train time and final loss of a finished run, from its last metrics record."""
    last = (read_metrics(Path(output) / "metrics.jsonl") or [{}])[-1]
    return {
        "steps": last.get("step"),
        "wall_time_s": last.get("wall_time_s"),
        "train_time_s": last.get("train_time_s"),
        "final_loss": last.get("loss"),
    }
