"""`python -m benchmarks.gpu --tiny`: the GPU check's whole path (train fit, killed and resumed,
encode throughput of Causal2Vec and its eos baseline, agreement) on a tiny model on CPU, so the script cannot rot;
with the tokenizers of a `bundle`, as on a GPU machine without the offline parts."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from causal2vec import REPO_ROOT
from causal2vec.assemble import TINY_DECODER, TINY_ENCODER, build_random
from causal2vec.parts import default_decoder_path, default_encoder_path


def gpu(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    cmd = [sys.executable, "-m", "benchmarks.gpu", *args]
    return subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)


def test_a_random_part_takes_the_tokenizer_folder_it_names(tmp_path: Path) -> None:
    offline = {}
    for part, path in (("decoder", default_decoder_path()), ("encoder", default_encoder_path())):
        tokenizer = AutoTokenizer.from_pretrained(path)
        offline[part] = len(tokenizer)
        tokenizer.add_tokens(["<only-in-this-folder>"])
        tokenizer.save_pretrained(tmp_path / part)
    folders = {part: {"tokenizer": str(tmp_path / part)} for part in offline}
    model = build_random(decoder={**TINY_DECODER, **folders["decoder"]}, encoder={**TINY_ENCODER, **folders["encoder"]})
    assert model.config.decoder.vocab_size == len(model.tokenizer) == offline["decoder"] + 1
    assert model.config.encoder.vocab_size == offline["encoder"] + 1
    plain = build_random().config
    assert {"decoder": plain.decoder.vocab_size, "encoder": plain.encoder.vocab_size} == offline
    with pytest.raises(FileNotFoundError, match="encoder tokenizer folder .*missing does not exist"):
        build_random(encoder={**TINY_ENCODER, "tokenizer": str(tmp_path / "missing")})


def test_tiny_gpu_benchmark_runs_kills_resumes_and_reports(tmp_path: Path) -> None:
    made = gpu("bundle", str(tmp_path / "bundle"), "--no-wheels")
    assert made.returncode == 0, made.stderr[-3000:]
    for part in ("decoder", "encoder"):
        assert (tmp_path / "bundle" / "tokenizers" / part / "tokenizer.json").is_file(), part
    again = gpu("bundle", str(tmp_path / "bundle"), "--no-wheels")  # what the folder holds is kept
    assert again.returncode != 0 and "is not empty; pass --overwrite" in again.stderr
    (tmp_path / "bundle" / "notes.txt").write_text("mine")  # --overwrite replaces the bundle's folders alone
    assert gpu("bundle", str(tmp_path / "bundle"), "--no-wheels", "--overwrite").returncode == 0
    assert (tmp_path / "bundle" / "notes.txt").read_text() == "mine"
    too_few = gpu("--tiny", "--steps", "5")  # a checkpoint every step: no step left to time
    assert too_few.returncode == 2 and "--steps 5: at least 6" in too_few.stderr
    missing = gpu("--tiny", "--tokenizers", str(tmp_path))
    assert missing.returncode != 0 and "no saved tokenizer; pass FOLDER/tokenizers" in missing.stderr
    output, cache = tmp_path / "gpu.json", tmp_path / "parts-cache"
    # the offline parts' conversion cache stays empty: the bundle's tokenizers are all the model is built from
    proc = gpu("--tiny", "--tokenizers", str(tmp_path / "bundle" / "tokenizers"), "--output", str(output),
               env={"CAUSAL2VEC_CACHE": str(cache)})  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not cache.exists()
    result = json.loads(output.read_text())
    assert {"device", "peak_bf16_tflops", "versions", "flops", "train", "encode"} <= set(result)
    assert result["device"] == "cpu" and result["peak_bf16_tflops"] is None and "6*N" in result["flops"]
    train = result["train"]
    # killed after its first checkpoint (step 2 of 4), mid-run, then resumed from it to the last step
    assert 0 < train["resumed_from"] < train["killed_at_step"] <= train["steps"] == 4
    assert train["final_step"] == train["steps"] and train["steps_logged"] == [1, 2, 3, 4]
    assert math.isfinite(train["final_loss"]) and train["timed_steps"] == 2  # steps 1 and 3 start a process
    assert train["step_time_s"] > 0 and train["pairs_per_s"] > 0 and train["tokens_per_s"] > 0
    assert train["peak_mib"] > 0 and train["mfu_percent"] is None  # no GPU: no peak to compare with
    assert train["params"]["decoder"]["trained"] > 0 and train["params"]["decoder"]["frozen"] > 0  # LoRA, frozen base
    assert train["flops_per_token"] > 0
    encode = result["encode"]
    assert train["attention"] == encode["attention"] == {"decoder": "sdpa", "encoder": "sdpa"}
    for name in ("causal2vec", "eos"):
        assert encode[name]["texts_per_s"] > 0 and encode[name]["tokens_per_s"] > 0, name
        assert encode[name]["flops_per_token"] > 0, name
    assert encode["ratio_texts_per_s"] == encode["causal2vec"]["texts_per_s"] / encode["eos"]["texts_per_s"]
    agreement = encode["agreement"]
    assert agreement["compared"] == "cpu bf16 autocast vs cpu fp32"
    assert math.isfinite(agreement["max_abs_diff"]) and 0.99 < agreement["min_cosine"] <= 1.0 + 1e-6
    for label in ("step time", "train MFU", "peak memory", "encode causal2vec", "encode eos", "agreement"):
        assert label in proc.stdout, label
