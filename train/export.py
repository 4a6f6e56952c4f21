"""Export a trained model as a Hub-ready folder: LoRA merged, weights + remote code + tokenizer +
sentence-transformers files (`save_pretrained`), the model card, the training config and a loss-curve PNG."""

from __future__ import annotations

import json
import logging
import statistics
from pathlib import Path
from typing import Any

import yaml
from torch import nn

logger = logging.getLogger(__name__)


def read_metrics(path: Path, evaluations: bool = False) -> list[dict[str, Any]]:
    """The training records of a `metrics.jsonl` (or with `evaluations`, its `{"step", "eval"}` records of the
    evaluation during training); a truncated last line (a crash mid-write) is dropped with a warning."""
    if not path.is_file():
        return []
    lines = [(i, line) for i, line in enumerate(path.read_text(errors="replace").splitlines(), 1) if line.strip()]
    out = []
    for n, (lineno, line) in enumerate(lines, 1):
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError as err:
            if n < len(lines):
                raise ValueError(f"{path}:{lineno}: not a JSON record ({err.msg})") from None
            logger.warning("%s:%d: dropped a truncated last line (%r)", path, lineno, line[:80])
    return [m for m in out if ("eval" in m) == evaluations]


def truncate_metrics(path: Path, step: int) -> list[dict[str, Any]]:
    """Keep the records (training and evaluation) of steps up to `step`, those of the checkpoint a run resumes
    from; returns the training records kept."""
    kept = [m for m in read_metrics(path) if m["step"] <= step]
    evals = [m for m in read_metrics(path, evaluations=True) if m["step"] <= step]
    path.write_text("".join(json.dumps(m) + "\n" for m in sorted(kept + evals, key=lambda m: m["step"])))
    return kept


def plot_loss(metrics: list[dict[str, Any]], path: Path, window: int = 20) -> Path:
    """Loss per step and its running mean, as a PNG (Agg backend, no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [m["step"] for m in metrics]
    loss = [m["loss"] for m in metrics]
    smooth = [statistics.fmean(loss[max(0, i - window + 1) : i + 1]) for i in range(len(loss))]
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
    data_files: dict[str, int | str],
    metrics: list[dict[str, Any]],
) -> Path:
    """Write `model` (a Causal2VecModel with any LoRA already merged) into `folder`, ready to upload."""
    from causal2vec.card import TRAINING_CONFIG_FILE, write_model_card

    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    (folder / TRAINING_CONFIG_FILE).write_text(yaml.safe_dump(config, sort_keys=False))
    curve = plot_loss(metrics, folder / "loss_curve.png").name if metrics else None
    write_model_card(folder, model.config, base_models, training=training, data_files=data_files, loss_curve=curve)
    return folder
