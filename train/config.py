"""Training configuration: a YAML data file turned into typed dataclasses, with `--set key=value` overrides."""

from __future__ import annotations

import contextlib
import dataclasses
import types
import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml
from transformers import PreTrainedConfig

from causal2vec import REPO_ROOT
from causal2vec.assemble import flatten
from configuration_causal2vec import CONTEXTUAL_TOKEN_FIELDS, Causal2VecConfig

CONFIGS = Path(__file__).resolve().parent / "configs"
DTYPE_NAMES = ("bf16", "fp32")  # no fp16: it would need a GradScaler; bf16 is what we document
# keys a resumed run may change: they do not affect what the next step computes
RESUME_SAFE_KEYS = frozenset({"save_every", "keep_checkpoints", "eval_every", "eval_data"})
RETIRED_KEYS = frozenset({"log_every"})  # meant nothing to training: a saved config holding them still compares
# keys a baseline run ignores as well (it has no connector), so a recipe change there keeps its runs reusable
BASELINE_SAFE_KEYS = frozenset({"lr_connector", *(f"model.config.{f}" for f in CONTEXTUAL_TOKEN_FIELDS)})
PART_KEYS = {"encoder": "model.encoder", "decoder": "model.decoder", "dtype": "model.dtype"}  # where these go instead


def _model_config_hints() -> dict[str, Any]:
    """Causal2VecConfig's own fields (not PreTrainedConfig's, not the parts) and their annotations, evaluated in
    their module (`typing.get_type_hints` would also evaluate PreTrainedConfig's, which name modules it does not
    import)."""
    import configuration_causal2vec

    own = Causal2VecConfig.__annotations__
    inherited = {f.name for f in dataclasses.fields(PreTrainedConfig)} | {"encoder", "decoder"}
    names = [f.name for f in dataclasses.fields(Causal2VecConfig) if f.name not in inherited]
    return {name: eval(own[name], vars(configuration_causal2vec)) for name in names}


# what `model.config` may set, and the types its numbers are checked against: transformers' config would accept a
# typo and ignore it; the parts come from `model.decoder` / `model.encoder`
MODEL_CONFIG_HINTS = _model_config_hints()
MODEL_CONFIG_FIELDS = frozenset(MODEL_CONFIG_HINTS)


class ConfigError(ValueError):
    """A config that cannot be used: unknown key, wrong type or out-of-range value."""


def _check_types(obj: Any, where: str = "") -> None:
    """Check (and coerce: `1e3` -> 1000 for an int, `2e-4` (a YAML 1.1 string) -> float) each field's value
    against its annotation; raise `ConfigError` naming the dotted key."""
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        setattr(obj, f.name, _coerce(getattr(obj, f.name), hints[f.name], where + f.name))


# hand-written: YAML 1.1 reads `1e-4` as a string and `1e3` as a float; huggingface_hub's strict dataclasses check
# values against their annotations but do not coerce them
def _coerce(value: Any, hint: Any, key: str) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any or (value is None and type(None) in args):
        return value
    if origin in (typing.Union, types.UnionType):
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg, key)
            except ConfigError as err:
                errors.append(err)
        raise errors[0]
    if isinstance(value, str) and hint in (int, float):
        with contextlib.suppress(ValueError):
            value = float(value)
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if number and (hint is float or (hint is int and float(value).is_integer())):
        return hint(value)
    if origin is list and isinstance(value, list):
        return [_coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value)]
    if hint not in (int, float) and isinstance(value, origin or hint):  # bool, str, dict or a section's dataclass
        return value
    kinds = {int: "an integer", float: "a number", bool: "true or false", str: "a string", dict: "a mapping"}
    name = kinds.get(origin or hint, "a mapping" if dataclasses.is_dataclass(hint) else str(hint))
    raise ConfigError(f"{key} must be {name}, got {value!r}")


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


@dataclass
class ModelSettings:
    """What to build. `random: true` builds a random model (`build_random`: `decoder`/`encoder` are config dicts,
    each may name a `tokenizer` folder); otherwise `decoder`/`encoder` are folders (null = the default
    SmolLM2-135M-Instruct / all-MiniLM-L6-v2), and `decoder` may name an offline part in `causal2vec.parts.DECODERS`
    (`gemma3-270m`)."""

    random: bool = False
    decoder: Any = None
    encoder: Any = None
    gguf_file: str | None = None
    seed: int = 0
    dtype: str = "fp32"  # load dtype of the pretrained parts: bf16 | fp32 (trainable parameters stay fp32)
    config: dict[str, Any] = field(default_factory=dict)  # Causal2VecConfig fields, e.g. decoder_max_length

    def __post_init__(self) -> None:
        _check_types(self, "model.")
        _require(self.dtype in DTYPE_NAMES, f"model.dtype must be one of {', '.join(DTYPE_NAMES)}, got {self.dtype!r}")
        for key in sorted(set(self.config) & set(PART_KEYS)):
            raise ConfigError(f"model.config.{key}: set {PART_KEYS[key]} instead")
        unknown = sorted(set(self.config) - MODEL_CONFIG_FIELDS)
        _require(
            not unknown,
            f"unknown Causal2VecConfig field(s) in model.config: {', '.join(unknown)} "
            f"(known: {', '.join(sorted(MODEL_CONFIG_FIELDS))})",
        )
        for key, value in self.config.items():  # Causal2VecConfig checks its Literal and str options itself
            if MODEL_CONFIG_HINTS[key] in (bool, int, float, int | None):
                self.config[key] = _coerce(value, MODEL_CONFIG_HINTS[key], f"model.config.{key}")


@dataclass
class LoraSettings:
    """LoRA on the decoder (peft). `r: 0` trains the decoder fully; `target_modules: null` picks per family."""

    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: list[str] | str | None = None

    def __post_init__(self) -> None:
        _check_types(self, "lora.")
        _require(self.r >= 0 and self.alpha > 0, f"lora.r must be >= 0 and lora.alpha > 0, got {self.r}, {self.alpha}")
        _require(0 <= self.dropout < 1, f"lora.dropout must be in [0, 1), got {self.dropout}")


@dataclass
class TrainConfig:
    model: ModelSettings = field(default_factory=ModelSettings)
    lora: LoraSettings = field(default_factory=LoraSettings)
    baseline: str | None = None  # train causal2vec.baselines.build_baseline(name, model) instead
    # data: a JSONL file or a folder of them, a `datasets` save_to_disk folder, parquet file(s) or a Hub dataset id
    # (owner/name[:config]); relative paths are relative to the repository root
    data: str = "../shared/data/train"
    batch_size: int = 16  # global: query/positive pairs per step, over all ranks
    hard_negatives: int = 1  # per query, when the row has them
    # tokens per text while training, each side (null: the model's own lengths); the export keeps the model's own
    max_length: int | None = None
    document_prompt: str | None = None  # prompt for documents (null: none)
    temperature: float = 0.05
    cached_chunk_size: int = 0  # > 0: GradCache loss, embedding this many texts per forward
    half_loss_weight: float = 0.0  # > 0: + this x the InfoNCE of C's and of EOS's half alone (train/loss.py)
    # Matryoshka: also the InfoNCE of each of these leading prefixes, renormalised (e.g. [576, 256, 128]: C, then
    # parts of it; 768 would be C plus part of EOS), each at weight 1, so shorter vectors (`truncate_dim`) keep meaning
    matryoshka_dims: list[int] = field(default_factory=list)
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
    clip: str = "global"  # global: one norm over all trainable parameters | per_part: decoder, connector, encoder each
    connector_only_steps: int = 0  # first steps train the connector alone (decoder and encoder lr 0), then warm up
    gradient_checkpointing: bool = False
    dtype: str = "bf16"  # autocast dtype: bf16 | fp32
    seed: int = 0
    # bookkeeping
    save_every: int = 50
    keep_checkpoints: int = 2
    # read the JSONL data as it trains (a `datasets` IterableDataset, for data larger than memory), shuffled in a
    # buffer of `stream_buffer` rows; batches may then mix sources (train/data.py)
    streaming: bool = False
    stream_buffer: int = 10000
    # evaluation during training: every `eval_every` steps (0: never), Spearman of the
    # cosines on `eval_data`, an STS TSV (sentence1, sentence2, score) relative to the repository root
    eval_every: int = 0
    eval_data: str = "../shared/data/eval/stsb/dev.tsv"
    # SentenceTransformerTrainingArguments fields (gradient_accumulation_steps, report_to, dataloader_num_workers,
    # ...); keys the config owns above are refused there, naming the key to set (train/fit.py)
    trainer: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_types(self)
        _require(
            self.schedule in ("cosine", "linear", "constant"),
            f"schedule must be cosine, linear or constant, got {self.schedule!r}",
        )
        _require(
            self.connector_only_steps < self.steps,
            f"connector_only_steps={self.connector_only_steps} must be below steps={self.steps}",
        )
        _require(self.clip in ("global", "per_part"), f"clip must be global or per_part, got {self.clip!r}")
        _require(self.max_length is None or self.max_length >= 4, f"max_length must be >= 4, got {self.max_length}")
        model_prompt = self.model.config.get("document_prompt")
        _require(
            self.document_prompt is None or model_prompt is None or model_prompt == self.document_prompt,
            f"document_prompt={self.document_prompt!r} differs from model.config.document_prompt={model_prompt!r}",
        )
        _require(self.dtype in DTYPE_NAMES, f"dtype must be one of {', '.join(DTYPE_NAMES)}, got {self.dtype!r}")
        _require(
            self.model.dtype == "fp32" or self.dtype == self.model.dtype,
            f"model.dtype={self.model.dtype} needs autocast in the same dtype: set dtype: {self.model.dtype}",
        )
        for name in ("batch_size", "steps", "save_every", "stream_buffer"):
            _require(getattr(self, name) >= 1, f"{name} must be >= 1, got {getattr(self, name)}")
        non_negative = ("hard_negatives", "cached_chunk_size", "warmup_steps", "keep_checkpoints", "weight_decay")
        non_negative += ("connector_only_steps", "half_loss_weight", "eval_every")
        for name in (*non_negative, "lr_decoder", "lr_connector", "lr_encoder"):
            _require(getattr(self, name) >= 0, f"{name} must be >= 0, got {getattr(self, name)}")
        dims = self.matryoshka_dims
        _require(all(d >= 1 for d in dims), f"matryoshka_dims must be positive, got {dims}")
        _require(len(set(dims)) == len(dims), f"matryoshka_dims repeats a value: {dims}")
        _require(
            not (dims and self.half_loss_weight), "matryoshka_dims and half_loss_weight: one prefix term at a time"
        )
        for name in ("temperature", "max_grad_norm"):
            _require(getattr(self, name) > 0, f"{name} must be > 0, got {getattr(self, name)}")

    def data_path(self, key: str = "data") -> Path:
        """`data` (or another path key, `eval_data`) as a path; relative ones are relative to the repository."""
        path = Path(getattr(self, key)).expanduser()
        return path if path.is_absolute() else (REPO_ROOT / path).resolve()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def resume_conflicts(saved: dict[str, Any], current: TrainConfig) -> list[str]:
    """`key: saved -> now` for each (dotted) key whose value differs between a checkpoint's config and `current`;
    keys the saved config lacks count at their default; `RESUME_SAFE_KEYS` may change, and `BASELINE_SAFE_KEYS`
    too when both train the same baseline."""
    try:
        old = flatten(_build(TrainConfig, {k: v for k, v in saved.items() if k not in RETIRED_KEYS}).to_dict())
    except ConfigError as err:
        return [f"the saved config is not valid now ({err})"]
    new = flatten(current.to_dict())
    unset = "(unset)"
    safe = RESUME_SAFE_KEYS | (
        BASELINE_SAFE_KEYS if current.baseline and old.get("baseline") == current.baseline else set()
    )
    return [
        f"{k}: {old.get(k, unset)!r} -> {new.get(k, unset)!r}"
        for k in sorted(set(old) | set(new))
        if k not in safe and old.get(k, unset) != new.get(k, unset)
    ]


def _build(cls: type, values: dict[str, Any], where: str = "") -> Any:
    """Make dataclass `cls` from a dict, refusing unknown keys (with their dotted name)."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if retired := sorted(set(unknown) & RETIRED_KEYS) if cls is TrainConfig else []:
        raise ConfigError(f"{', '.join(retired)}: retired (metrics.jsonl logs every step); remove it from the config")
    if unknown:
        raise ConfigError(f"unknown config key(s): {', '.join(where + k for k in unknown)}")
    hints = typing.get_type_hints(cls)
    sections = {k: v for k, v in values.items() if dataclasses.is_dataclass(hints[k]) and isinstance(v, dict)}
    return cls(**values | {k: _build(hints[k], v, f"{k}.") for k, v in sections.items()})


def set_dotted(values: dict[str, Any], key: str, value: Any) -> None:
    """`set_dotted(d, "lora.r", 8)` sets d["lora"]["r"], creating nested dicts as needed."""
    *parents, last = key.split(".")
    for part in parents:
        node = values.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"cannot set {key}: {part} is not a mapping")
        values = node
    values[last] = value


def parse_overrides(items: list[str]) -> list[tuple[str, Any]]:
    """`["lr_decoder=1e-4", "lora.r=8"]` -> [(key, YAML-parsed value), ...]; numbers in strings (YAML 1.1 reads
    `1e-4` as one) become numbers when the config is checked."""
    out = []
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set expects KEY=VALUE, got {item!r}")
        out.append((key.strip(), yaml.safe_load(raw)))
    return out


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> TrainConfig:
    """Read a YAML config (a path, or a name in train/configs/) and apply `key=value` overrides."""
    values: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file() and (CONFIGS / f"{path}.yaml").is_file():
            p = CONFIGS / f"{path}.yaml"
        if not p.is_file():
            names = ", ".join(sorted(c.stem for c in CONFIGS.glob("*.yaml")))
            raise ConfigError(f"config {str(path)!r} not found: give a YAML file or one of {names}")
        try:
            values = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"{p}: not valid YAML ({err})") from None
        if not isinstance(values, dict):
            raise ConfigError(f"{p}: a config must be a YAML mapping")
    for key, value in parse_overrides(overrides or []):
        set_dotted(values, key, value)
    return _build(TrainConfig, values)
