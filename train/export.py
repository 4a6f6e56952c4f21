"""Export a trained model as a Hub-ready folder: LoRA merged, weights + remote code + tokenizer +
sentence-transformers files (`save_pretrained`), the model card, the training config and a loss-curve PNG."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from torch import nn


def merge_lora(model: nn.Module, peft_model: Any) -> nn.Module:
    """Merge LoRA adapters into the decoder's weights (in place) and put the plain decoder back on `model`."""
    if peft_model is not None:
        model.decoder = peft_model.merge_and_unload()
    return model


def read_metrics(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def plot_loss(metrics: list[dict[str, Any]], path: Path, window: int = 20) -> Path:
    """Loss per step and its running mean, as a PNG (Agg backend, no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [m["step"] for m in metrics]
    loss = [m["loss"] for m in metrics]
    smooth = [
        sum(loss[max(0, i - window + 1) : i + 1]) / len(loss[max(0, i - window + 1) : i + 1]) for i in range(len(loss))
    ]
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=120)
    ax.plot(steps, loss, alpha=0.35, label="loss")
    ax.plot(steps, smooth, label=f"mean of last {window}")
    ax.set_xlabel("step")
    ax.set_ylabel("InfoNCE loss")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def export(
    model: nn.Module,
    folder: Path,
    config: dict[str, Any],
    base_models: list[str],
    training: dict[str, Any],
    data_files: dict[str, int],
    metrics: list[dict[str, Any]],
    evaluation: dict[str, Any] | None = None,
) -> Path:
    """Write `model` (a Causal2VecModel with any LoRA already merged) into `folder`, ready to upload."""
    from train.card import write_model_card

    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    (folder / "training_config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    if metrics:
        plot_loss(metrics, folder / "loss_curve.png")
    write_model_card(folder, model.config, base_models, training=training, evaluation=evaluation, data_files=data_files)
    if metrics:
        with open(folder / "README.md", "a") as f:
            f.write("\n![training loss](loss_curve.png)\n")
    return folder
