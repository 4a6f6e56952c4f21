"""`python -m benchmarks.efficiency`: decoder input length and wall time of Causal2Vec versus each baseline.

All methods run in one process on the same machine, on the same seeded text subsamples, through the same
`encode()` (length-sorted batches). Causal2Vec's own encoder cost is measured separately (the "encoder"
baseline runs exactly the Causal2Vec encoder on exactly its inputs). Ratios are to Causal2Vec. A second part
measures STS-B dev quality and time against `decoder_max_length`: how much text the decoder still needs.
No instructions are used here: the cost of the text itself is measured.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from causal2vec import REPO_ROOT
from causal2vec.baselines import BASELINES, build_baseline
from causal2vec.dtypes import DTYPES
from evaluation import data, metrics
from evaluation.data import DEFAULT_DATA
from evaluation.embedder import load_model

METHODS = ("causal2vec", *BASELINES)


def text_sets(root: Path, n_sts: int, n_docs: int, seed: int) -> dict[str, list[str]]:
    """Seeded subsamples: unique STS-B test sentences and SciFact corpus documents ("title text")."""
    sts = data.read_sts(root / "stsb" / "test.tsv")
    sentences = list(dict.fromkeys(sts.sentences1 + sts.sentences2))
    docs = list(data.read_beir(root / "scifact").corpus.values())
    rng = random.Random(seed)
    return {
        "stsb-test": rng.sample(sentences, min(n_sts, len(sentences))),
        "scifact-corpus": rng.sample(docs, min(n_docs, len(docs))),
    }


def token_counts(module: Any, texts: list[str]) -> dict[str, float]:
    """Mean real decoder (or, for the encoder baseline, encoder) tokens per text, and encoder tokens if any."""
    batch = module.tokenizer(texts, return_tensors="pt")
    out = {"decoder_tokens": float(batch["attention_mask"].sum(1).float().mean())}
    if "encoder_attention_mask" in batch:
        out["encoder_tokens"] = float(batch["encoder_attention_mask"].sum(1).float().mean())
    return out


def time_encode(module: Any, texts: list[str], dtype: torch.dtype, device: str, batch_size: int) -> float:
    """Wall time (seconds) of one `module.encode(texts)`."""
    return time_encode_both(module, texts, dtype, device, batch_size)[0]


def time_encode_both(
    module: Any, texts: list[str], dtype: torch.dtype, device: str, batch_size: int
) -> tuple[float, float]:
    """Wall time and this process's CPU time (seconds) of one `module.encode(texts)`.

    CPU time is less sensitive than wall time to other jobs on a shared machine (it still counts threads
    that spin while waiting for a descheduled sibling).
    """
    if device == "cuda":
        torch.cuda.synchronize()
    start, cpu = time.perf_counter(), time.process_time()
    module.encode(texts, batch_size=batch_size, dtype=dtype, device=device)
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start, time.process_time() - cpu


def build_methods(model: Any, methods: list[str]) -> dict[str, Any]:
    return {m: model if m == "causal2vec" else build_baseline(m, model) for m in methods}


def speed_table(
    model: Any,
    sets: dict[str, list[str]],
    methods: list[str],
    dtypes: list[str],
    devices: list[str],
    batch_size: int,
    repeats: int,
) -> list[dict[str, Any]]:
    """One row per (device, dtype, text set, method): tokens per text, seconds per 1,000 texts, ratios."""
    modules = build_methods(model, methods)
    rows = []
    for device in devices:
        for dtype in dtypes:
            for set_name, texts in sets.items():
                best = {name: float("inf") for name in modules}
                best_cpu = {name: float("inf") for name in modules}
                for module in modules.values():  # warm-up
                    module.encode(texts[:batch_size], batch_size=batch_size, dtype=DTYPES[dtype], device=device)
                for _ in range(repeats):  # rounds over all methods, so that drifting machine load hits all alike
                    for name, module in modules.items():
                        seconds, cpu = time_encode_both(module, texts, DTYPES[dtype], device, batch_size)
                        best[name] = min(best[name], seconds)
                        best_cpu[name] = min(best_cpu[name], cpu)
                group = []
                for name, module in modules.items():
                    row = {
                        "device": device,
                        "dtype": dtype,
                        "texts": set_name,
                        "n": len(texts),
                        "method": name,
                        **token_counts(module, texts),
                        "seconds_per_1k": 1000 * best[name] / len(texts),
                        "cpu_seconds_per_1k": 1000 * best_cpu[name] / len(texts),
                    }
                    group.append(row)
                    print(
                        f"{device} {dtype} {set_name:15} {name:14} {row['decoder_tokens']:7.1f} tok "
                        f"{row['seconds_per_1k']:8.2f} s/1k  (CPU {row['cpu_seconds_per_1k']:8.2f} s/1k)",
                        flush=True,
                    )
                ref = next((r for r in group if r["method"] == "causal2vec"), None)
                enc = next((r for r in group if r["method"] == "encoder"), None)
                for row in group:
                    if ref is not None:
                        row["time_ratio"] = row["seconds_per_1k"] / ref["seconds_per_1k"]
                        row["cpu_time_ratio"] = row["cpu_seconds_per_1k"] / ref["cpu_seconds_per_1k"]
                        if row["method"] != "encoder":
                            row["decoder_token_ratio"] = row["decoder_tokens"] / ref["decoder_tokens"]
                    if row["method"] == "causal2vec" and enc is not None:
                        row["encoder_seconds_per_1k"] = enc["seconds_per_1k"]
                        row["encoder_cpu_seconds_per_1k"] = enc["cpu_seconds_per_1k"]
                rows.extend(group)
    return rows


def length_curve(
    model: Any,
    root: Path,
    lengths: list[int],
    n_pairs: int,
    dtype: str,
    batch_size: int,
    seed: int,
    methods: tuple[str, ...] = ("causal2vec", "eos"),
    docs: list[str] | None = None,
) -> list[dict[str, Any]]:
    """STS-B dev Spearman (subsample) and time per 1,000 texts (STS-B dev sentences, and `docs` if given)
    against `decoder_max_length`, for Causal2Vec and the plain-decoder EOS baseline."""
    sts = data.read_sts(root / "stsb" / "dev.tsv")
    keep = sorted(random.Random(seed).sample(range(len(sts.scores)), min(n_pairs, len(sts.scores))))
    s1, s2 = [sts.sentences1[i] for i in keep], [sts.sentences2[i] for i in keep]
    gold = [sts.scores[i] for i in keep]
    texts = list(dict.fromkeys(s1 + s2))
    index = {t: i for i, t in enumerate(texts)}
    modules = build_methods(model, list(methods))
    rows = []
    for name, module in modules.items():
        tok = module.tokenizer
        attr = "decoder_max_length" if name == "causal2vec" else "max_length"
        original = getattr(tok, attr)
        try:
            for length in lengths:
                setattr(tok, attr, length)
                start = time.perf_counter()
                emb = module.encode(texts, batch_size=batch_size, dtype=DTYPES[dtype])
                seconds = time.perf_counter() - start
                spearman = metrics.sts_scores(emb[[index[t] for t in s1]], emb[[index[t] for t in s2]], gold)
                row = {
                    "method": name,
                    "decoder_max_length": length,
                    "stsb_dev_spearman": spearman["cosine_spearman"],
                    "stsb_seconds_per_1k": 1000 * seconds / len(texts),
                    "stsb_decoder_tokens": token_counts(module, texts)["decoder_tokens"],
                }
                if docs:
                    row["scifact_seconds_per_1k"] = (
                        1000 * time_encode(module, docs, DTYPES[dtype], "cpu", batch_size) / len(docs)
                    )
                    row["scifact_decoder_tokens"] = token_counts(module, docs)["decoder_tokens"]
                rows.append(row)
                print(
                    f"curve {name:10} L={length:4} spearman={row['stsb_dev_spearman']:.4f} "
                    f"{row['stsb_seconds_per_1k']:.2f} s/1k",
                    flush=True,
                )
        finally:
            setattr(tok, attr, original)
    return rows


def chart_title(results: dict[str, Any]) -> str:
    """The chart's title: `results["title"]` if given, else the model folder's name (never a full local path)."""
    return results.get("title") or Path(str(results["model"]).rstrip("/\\")).name or str(results["model"])


def plot(results: dict[str, Any], path: Path) -> None:
    """Bar chart of seconds per 1,000 texts per method (one panel per text set, CPU) and the length curve."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    speed = [r for r in results["speed"] if r["device"] == "cpu"]
    # CPU time of this process: robust to other jobs on a shared machine; wall time is in the JSON
    metric = "cpu_seconds_per_1k" if all("cpu_seconds_per_1k" in r for r in speed) else "seconds_per_1k"
    sets = list(dict.fromkeys(r["texts"] for r in speed))
    dtypes = list(dict.fromkeys(r["dtype"] for r in speed))
    methods = list(dict.fromkeys(r["method"] for r in speed))
    curve = results.get("length_curve") or []
    fig, axes = plt.subplots(1, len(sets) + (1 if curve else 0), figsize=(5.2 * (len(sets) + 1), 4.2))
    axes = np.atleast_1d(axes)
    width = 0.8 / max(1, len(dtypes))
    for ax, set_name in zip(axes, sets, strict=False):
        x = np.arange(len(methods))
        for j, dtype in enumerate(dtypes):
            vals = [
                next(r[metric] for r in speed if r["texts"] == set_name and r["dtype"] == dtype and r["method"] == m)
                for m in methods
            ]
            bars = ax.bar(x + j * width, vals, width, label=dtype)
            for b, v in zip(bars, vals, strict=True):
                ax.annotate(f"{v:.0f}", (b.get_x() + b.get_width() / 2, v), ha="center", va="bottom", fontsize=7)
        n = next(r["n"] for r in speed if r["texts"] == set_name)
        tokens = [
            next(r["decoder_tokens"] for r in speed if r["texts"] == set_name and r["method"] == m) for m in methods
        ]
        ax.set_xticks(x + width * (len(dtypes) - 1) / 2)
        ax.set_xticklabels([f"{m}\n{t:.0f} tok" for m, t in zip(methods, tokens, strict=True)], fontsize=7)
        ax.set_ylabel(("CPU " if metric.startswith("cpu") else "wall ") + "seconds per 1,000 texts")
        ax.set_title(f"{set_name} (n={n})")
        ax.legend(fontsize=8)
    if curve:
        ax = axes[-1]
        ax2 = ax.twinx()
        for m, style in zip(dict.fromkeys(r["method"] for r in curve), ("o-", "s--", "^:"), strict=False):
            rows = [r for r in curve if r["method"] == m]
            ls = [r["decoder_max_length"] for r in rows]
            ax.plot(ls, [r["stsb_dev_spearman"] for r in rows], style, color="C0", label=f"{m} Spearman")
            key = "scifact_seconds_per_1k" if "scifact_seconds_per_1k" in rows[0] else "stsb_seconds_per_1k"
            ax2.plot(ls, [r[key] for r in rows], style, color="C3", label=f"{m} {key.split('_')[0]} s/1k")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("decoder_max_length")
        ax.set_ylabel("STS-B dev Spearman", color="C0")
        ax2.set_ylabel("seconds per 1,000 texts", color="C3")
        ax.set_title(f"truncation ({results['curve_dtype']})")
        h1, l1 = ax.get_legend_handles_labels()
        h2, l2 = ax2.get_legend_handles_labels()
        ax.legend(h1 + h2, l1 + l2, fontsize=7, loc="center right")
    fig.suptitle(f"{chart_title(results)}  ({results['machine']}, {results['threads']} threads)", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def markdown(results: dict[str, Any]) -> str:
    """Tables of the speed rows (per device, dtype and text set) and of the length curve."""
    lines = []
    speed = results["speed"]
    for key in dict.fromkeys((r["device"], r["dtype"], r["texts"]) for r in speed):
        rows = [r for r in speed if (r["device"], r["dtype"], r["texts"]) == key]
        lines += [
            f"**{key[2]}** (n={rows[0]['n']}), {key[0]} {key[1]}",
            "",
            "| method | decoder tokens/text | tokens vs C2V | s / 1k texts | time vs C2V | CPU s / 1k | CPU vs C2V |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in rows:
            tokens = f"{r['decoder_tokens']:.1f}" + (" (encoder)" if r["method"] == "encoder" else "")
            tok_ratio = f"{r['decoder_token_ratio']:.2f}x" if "decoder_token_ratio" in r else "-"
            lines.append(
                f"| {r['method']} | {tokens} | {tok_ratio} | {r['seconds_per_1k']:.1f} | {r.get('time_ratio', 0):.2f}x "
                f"| {r.get('cpu_seconds_per_1k', 0):.1f} | {r.get('cpu_time_ratio', 0):.2f}x |"
            )
        lines.append("")
    curve = results.get("length_curve") or []
    if curve:
        docs = "scifact_seconds_per_1k" in curve[0]
        lines += [
            f"**decoder_max_length** ({results['curve_dtype']}; STS-B dev subsample"
            + (", SciFact documents timed" if docs else "")
            + ")",
            "",
            "| method | max length | STS-B dev Spearman | STS-B s / 1k | SciFact tokens/doc | SciFact s / 1k |",
            "|---|---|---|---|---|---|",
        ]
        for r in curve:
            lines.append(
                f"| {r['method']} | {r['decoder_max_length']} | {r['stsb_dev_spearman']:.4f} "
                f"| {r['stsb_seconds_per_1k']:.1f} | {r.get('scifact_decoder_tokens', 0):.0f} "
                f"| {r.get('scifact_seconds_per_1k', 0):.1f} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.efficiency",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", required=True, help="Causal2Vec checkpoint folder")
    p.add_argument("--output", type=Path, default=REPO_ROOT / "runs" / "efficiency", help="folder for efficiency.json")
    p.add_argument("--chart", type=Path, help="PNG path (default <output>/efficiency.png)")
    p.add_argument("--title", help="chart title (default: the model folder's name)")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    p.add_argument("--dtypes", nargs="+", default=["fp32", "bf16"], choices=sorted(DTYPES))
    p.add_argument("--n-sts", type=int, default=300, help="STS-B test sentences to time")
    p.add_argument("--n-docs", type=int, default=100, help="SciFact documents to time")
    p.add_argument("--sets", nargs="+", default=["stsb-test", "scifact-corpus"], help="text sets to time")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument(
        "--repeats", type=int, default=1, help="timed rounds over all methods (the best time per method is kept)"
    )
    p.add_argument("--lengths", nargs="*", type=int, default=[8, 16, 32, 64, 128])
    p.add_argument("--curve-pairs", type=int, default=300, help="STS-B dev pairs for the length curve")
    p.add_argument("--curve-docs", type=int, default=50, help="SciFact documents timed in the length curve (0: none)")
    p.add_argument("--curve-dtype", default="bf16", choices=sorted(DTYPES))
    p.add_argument("--no-gpu", action="store_true", help="CPU only even when CUDA is available")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, help="torch CPU threads")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    run(args)
    return 0


def run(args: argparse.Namespace) -> dict[str, Any]:
    model = load_model(args.model)
    sets = text_sets(args.data, args.n_sts, args.n_docs, args.seed)
    docs = sets["scifact-corpus"][: args.curve_docs] if args.curve_docs else None
    sets = {k: v for k, v in sets.items() if k in args.sets}
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() and not args.no_gpu else [])
    results: dict[str, Any] = {
        "model": str(args.model),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "threads": torch.get_num_threads(),
        "devices": devices,
        "batch_size": args.batch_size,
        "seed": args.seed,
        "instructions": None,
        "curve_dtype": args.curve_dtype,
        "title": args.title,
    }
    start = time.perf_counter()
    results["speed"] = speed_table(model, sets, args.methods, args.dtypes, devices, args.batch_size, args.repeats)
    model.to("cpu")
    if args.lengths:
        results["length_curve"] = length_curve(
            model, args.data, args.lengths, args.curve_pairs, args.curve_dtype, args.batch_size, args.seed, docs=docs
        )
    results["total_seconds"] = time.perf_counter() - start
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "efficiency.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.output / "efficiency.md").write_text(markdown(results))
    chart = args.chart or args.output / "efficiency.png"
    plot(results, chart)
    print(f"wrote {args.output / 'efficiency.json'} and {chart} in {results['total_seconds']:.0f} s")
    return results


if __name__ == "__main__":
    sys.exit(main())
