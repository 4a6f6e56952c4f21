"""Training configuration: a YAML data file turned into typed dataclasses, with `--set key=value` overrides."""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = Path(__file__).resolve().parent / "configs"


@dataclass
class ModelSettings:
    """What to build. `random: true` builds a tiny random model (`build_random`, `decoder`/`encoder` are config
    dicts); otherwise `decoder`/`encoder` are folders (null = the default SmolLM2-135M-Instruct / all-MiniLM-L6-v2)."""

    random: bool = False
    decoder: Any = None
    encoder: Any = None
    gguf_file: str | None = None
    seed: int = 0
    config: dict[str, Any] = field(default_factory=dict)  # Causal2VecConfig fields, e.g. decoder_max_length


@dataclass
class LoraSettings:
    """LoRA on the decoder (peft). `r: 0` trains the decoder fully; `target_modules: null` picks per family."""

    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: list[str] | str | None = None


@dataclass
class TrainConfig:
    model: ModelSettings = field(default_factory=ModelSettings)
    lora: LoraSettings = field(default_factory=LoraSettings)
    baseline: str | None = None  # train evaluation.baselines.build_baseline(name, model) instead
    # data: a JSONL file or a folder of them; relative paths are relative to the repository root
    data: str = "../shared/data/train"
    batch_size: int = 16  # global: query/positive pairs per step, over all ranks
    hard_negatives: int = 1  # per query, when the row has them
    document_prompt: str | None = None  # prompt for documents (null: none)
    temperature: float = 0.05
    cached_chunk_size: int = 0  # > 0: GradCache loss, embedding this many texts per forward
    # optimisation
    steps: int = 250
    lr_decoder: float = 2e-4
    lr_connector: float = 1e-3
    lr_encoder: float = 2e-5
    train_encoder: bool = True
    weight_decay: float = 0.01
    warmup_steps: int = 20
    schedule: str = "cosine"  # cosine | linear | constant
    max_grad_norm: float = 1.0
    gradient_checkpointing: bool = False
    dtype: str = "bf16"  # autocast dtype: bf16 | fp16 | fp32
    seed: int = 0
    # bookkeeping
    save_every: int = 50
    keep_checkpoints: int = 2
    log_every: int = 10  # tqdm postfix refresh; metrics.jsonl gets every step

    def __post_init__(self) -> None:
        if self.schedule not in ("cosine", "linear", "constant"):
            raise ValueError(f"schedule must be cosine, linear or constant, got {self.schedule!r}")
        if self.dtype not in ("bf16", "fp16", "fp32"):
            raise ValueError(f"dtype must be bf16, fp16 or fp32, got {self.dtype!r}")
        for name in ("batch_size", "steps", "save_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.hard_negatives < 0 or self.cached_chunk_size < 0:
            raise ValueError("hard_negatives and cached_chunk_size must be >= 0")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")

    def data_path(self) -> Path:
        path = Path(self.data).expanduser()
        return path if path.is_absolute() else (ROOT / path).resolve()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _build(cls: type, values: dict[str, Any], where: str = "") -> Any:
    """Make dataclass `cls` from a dict, refusing unknown keys (with their dotted name)."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ValueError(f"unknown config key(s): {', '.join(where + k for k in unknown)}")
    kwargs = {}
    for name, value in values.items():
        sub = {"model": ModelSettings, "lora": LoraSettings}.get(name) if cls is TrainConfig else None
        if sub is not None and isinstance(value, dict):
            value = _build(sub, value, f"{name}.")
        kwargs[name] = value
    return cls(**kwargs)


def set_dotted(values: dict[str, Any], key: str, value: Any) -> None:
    """`set_dotted(d, "lora.r", 8)` sets d["lora"]["r"], creating nested dicts as needed."""
    *parents, last = key.split(".")
    for part in parents:
        node = values.setdefault(part, {})
        if not isinstance(node, dict):
            raise ValueError(f"cannot set {key}: {part} is not a mapping")
        values = node
    values[last] = value


def parse_overrides(items: list[str]) -> list[tuple[str, Any]]:
    """`["lr_decoder=1e-4", "lora.r=8"]` -> [(key, YAML-parsed value), ...]."""
    out = []
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set expects KEY=VALUE, got {item!r}")
        value = yaml.safe_load(raw)
        if isinstance(value, str) and _looks_numeric(value):
            value = float(value)  # YAML 1.1 reads "1e-4" as a string
        out.append((key.strip(), value))
    return out


def _looks_numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> TrainConfig:
    """Read a YAML config (a path, or a name in train/configs/) and apply `key=value` overrides."""
    values: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file() and (CONFIGS / f"{path}.yaml").is_file():
            p = CONFIGS / f"{path}.yaml"
        values = yaml.safe_load(p.read_text()) or {}
        if not isinstance(values, dict):
            raise ValueError(f"{p}: a config must be a YAML mapping")
    for key, value in parse_overrides(overrides or []):
        set_dotted(values, key, value)
    _fix_numbers(values)
    return _build(TrainConfig, values)


def _fix_numbers(values: dict[str, Any]) -> None:
    """YAML 1.1 reads `2e-4` (no dot) as a string; turn such values back into floats."""
    for key, value in values.items():
        if isinstance(value, dict):
            _fix_numbers(value)
        elif (
            isinstance(value, str) and key.startswith(("lr_", "weight_decay", "temperature")) and _looks_numeric(value)
        ):
            values[key] = float(value)
