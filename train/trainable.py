"""What trains: LoRA on the decoder (peft), the connector always, the encoder fully or not; one lr per part."""

from __future__ import annotations

import math
from typing import Any

import torch
from peft import LoraConfig, get_peft_model
from torch import nn

from train.config import TrainConfig


class TrainingDiverged(RuntimeError):
    """The loss or gradient norm became NaN/inf (the update is not applied), or an update made weights non-finite;
    either way the run stops before saving anything of that step."""


_ATTN_MLP = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
LORA_TARGETS: dict[str, list[str]] = {
    **dict.fromkeys(
        ["llama", "mistral", "mixtral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3", "gemma3_text", "olmo2"],
        _ATTN_MLP,
    ),
    "phi3": ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"],
    "phi": ["q_proj", "k_proj", "v_proj", "dense", "fc1", "fc2"],
    "gpt2": ["c_attn", "c_proj", "c_fc"],
    "gpt_neox": ["query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"],
    "falcon": ["query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"],
}


def lora_targets(model_type: str, configured: list[str] | str | None) -> list[str] | str:
    """Configured target modules, else the family's attention + MLP projections, else peft's "all-linear"."""
    return configured or LORA_TARGETS.get(model_type, "all-linear")


def set_trainable(model: nn.Module, cfg: TrainConfig) -> Any:
    """Freeze/unfreeze the parts of a Causal2Vec model (or a baseline sharing its parts) per `cfg`.

    Returns the peft model when LoRA is used (for merging at export), else None.
    """
    model.requires_grad_(False)
    peft_model = None
    decoder = getattr(model, "decoder", None)  # None for the encoder-alone baseline
    if decoder is not None and cfg.lora.r > 0:  # adapters injected in place: only lora_* parameters require grad
        lora = cfg.lora
        targets = lora_targets(decoder.config.model_type, lora.target_modules)
        config = LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=targets)
        peft_model = get_peft_model(decoder, config)
    elif decoder is not None:
        decoder.requires_grad_(True)
    if getattr(model, "connector", None) is not None:
        model.connector.requires_grad_(True)
    if cfg.train_encoder and getattr(model, "encoder", None) is not None:
        model.encoder.requires_grad_(True)
    if not any(p.requires_grad for p in model.parameters()):
        raise ValueError("nothing to train: this model has no decoder or connector and train_encoder is false")
    for p in model.parameters():  # a bf16 base trains fp32 weights (LoRA, connector, encoder): sane AdamW updates
        if p.requires_grad and p.dtype != torch.float32:
            p.data = p.data.float()
    return peft_model


def param_groups(model: nn.Module, cfg: TrainConfig) -> list[dict[str, Any]]:
    """AdamW groups by part (decoder / connector / encoder), each with its own learning rate; biases and norm
    weights (1-D parameters) get no weight decay, as in HF Trainer. `name` is the part, `decay` says which."""
    lrs = {"decoder": cfg.lr_decoder, "connector": cfg.lr_connector, "encoder": cfg.lr_encoder}
    params: dict[str, list[nn.Parameter]] = {k: [] for k in lrs}
    for name, p in model.named_parameters():
        if p.requires_grad:
            part = name.split(".")[0]
            if part not in params:
                raise ValueError(f"trainable parameter {name} belongs to no known part (decoder, connector, encoder)")
            params[part].append(p)
    groups = []
    for part, ps in params.items():
        for decay in (True, False):
            chosen = [p for p in ps if (p.dim() >= 2) == decay]
            if chosen:
                wd = cfg.weight_decay if decay else 0.0
                groups.append({"name": part, "decay": decay, "params": chosen, "lr": lrs[part], "weight_decay": wd})
    return groups


# hand-written: transformers.get_scheduler has no per-part delay (connector_only_steps), and its warmup gives the
# first step lr 0 where this one gives lr / (warmup + 1)
def lr_lambda(cfg: TrainConfig, part: str = "connector"):
    """Linear warmup over `warmup_steps`, then cosine/linear decay to 0 at `steps` (or constant). Parts other than
    the connector wait `connector_only_steps` (lr 0) and then warm up."""
    delay = 0 if part == "connector" else cfg.connector_only_steps

    def factor(step: int) -> float:
        if step < delay:
            return 0.0
        step -= delay
        if step < cfg.warmup_steps:
            return (step + 1) / (cfg.warmup_steps + 1)
        if cfg.schedule == "constant":
            return 1.0
        progress = (step - cfg.warmup_steps) / max(1, cfg.steps - delay - cfg.warmup_steps)
        if cfg.schedule == "linear":
            return max(0.0, 1.0 - progress)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


def clip_gradients(
    groups: list[dict[str, Any]], max_norm: float, per_part: bool
) -> tuple[torch.Tensor, dict[str, float]]:
    """Clip the gradients of the optimizer's `groups` to `max_norm`, over all of them at once or part by part
    (decoder, connector, encoder: so that one part's spike does not shrink the others' update). Returns the total
    norm before clipping and each part's."""
    parts: dict[str, list[nn.Parameter]] = {}
    for g in groups:
        parts.setdefault(g["name"], []).extend(p for p in g["params"] if p.grad is not None)
    norms = {name: torch.nn.utils.get_total_norm([p.grad for p in ps]) for name, ps in parts.items() if ps}
    total = torch.linalg.vector_norm(torch.stack(list(norms.values()))) if norms else torch.zeros(())
    if per_part:
        for name, norm in norms.items():
            torch.nn.utils.clip_grads_with_norm_(parts[name], max_norm, norm)
    elif norms:
        torch.nn.utils.clip_grads_with_norm_([p for ps in parts.values() for p in ps], max_norm, total)
    return total, {name: float(norm) for name, norm in norms.items()}
