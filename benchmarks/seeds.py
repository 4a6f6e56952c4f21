"""`python -m benchmarks.seeds`: train a config and its baselines on several seeds, evaluate every run on the dev
battery, and print one table (mean ± std over seeds, the worst seed, the dev average).

    python -m benchmarks.seeds --seeds 0 1 2 --models causal2vec eos mean echo bidirectional
    python -m benchmarks.seeds --seeds 0 1 2 --models causal2vec bos-off:model.config.decoder_add_bos=false
    python -m benchmarks.seeds --seeds 0 1 2 --models causal2vec eos --untrained encoder   # + the encoder alone
    python -m benchmarks.seeds --seeds 0 1 2 --models causal2vec eos-pool:from=causal2vec,eval.pooling=eos

A model is `causal2vec` (the config as it is), a baseline name (`--set baseline=NAME`: eos, mean, echo,
bidirectional, incontext, encoder), or `NAME:KEY=VALUE[,KEY=VALUE...]`, a variant with train-config overrides (a
`baseline=...` among them trains and evaluates that baseline). Each seed sets both `seed` and `model.seed`.
`from=NAME` (with `eval.pooling=POOLING`) evaluates the runs of a model listed before it another way instead of
training. `--untrained NAME` evaluates the default untrained checkpoint (`python -m train init`, whatever
`--config` says) as baseline NAME (seed-independent, once).

Runs live in `OUTPUT/NAME/seed-S/` (the `train fit` folder, with `eval/` beside `model/`). Rerunning is safe: a
finished run is kept, an unfinished one resumes, an evaluated one is not evaluated again; nothing is overwritten.
The table goes to stdout and to `OUTPUT/table.md` / `OUTPUT/table.json`: the models of this command.

    python -m benchmarks.seeds --table-only           # every model evaluated in OUTPUT, by any command (stdout)
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from causal2vec import REPO_ROOT
from causal2vec.baselines import BASELINES
from configuration_causal2vec import POOLINGS
from evaluation.tasks import DEV_BATTERY, SELECTION_TASKS
from train.checkpoint import last_checkpoint
from train.config import load_config, resume_conflicts
from train.fit import summary


@dataclass
class ModelSpec:
    """One row of the table: a name, the train-config overrides that make it, and the baseline it embeds as."""

    name: str
    overrides: list[str] = field(default_factory=list)
    baseline: str | None = None
    source: str | None = None  # evaluate the runs of this (earlier) model instead of training its own
    pooling: str | None = None  # evaluate with this pooling instead of the checkpoint's (`evaluation run --pooling`)


def parse_model(text: str) -> ModelSpec:
    """`causal2vec`, a baseline name, or `NAME:KEY=VALUE[,KEY=VALUE...]` (a value may be a list: `k=[1,2]`)."""
    name, sep, rest = text.partition(":")
    if not name:
        raise ValueError(f"model {text!r}: empty name")
    if not sep:
        if name == "causal2vec":
            return ModelSpec(name)
        if name in BASELINES:
            return ModelSpec(name, [f"baseline={name}"], name)
        raise ValueError(f"unknown model {name!r}: causal2vec, one of {', '.join(BASELINES)}, or NAME:KEY=VALUE,...")
    items = [item.strip() for item in re.split(r",(?![^\[]*\])", rest) if item.strip()]  # no split inside [...]
    if not items or any("=" not in item for item in items):
        raise ValueError(f"model {text!r}: expected NAME:KEY=VALUE[,KEY=VALUE...]")
    pairs = dict(item.split("=", 1) for item in items)
    source, pooling = pairs.pop("from", None), pairs.pop("eval.pooling", None)
    overrides = [f"{k}={v}" for k, v in pairs.items()]
    if source is not None and overrides:
        raise ValueError(f"model {text!r}: from= reuses another model's runs; it takes no train overrides")
    baseline = pairs.get("baseline")
    if baseline is not None and baseline not in BASELINES:
        raise ValueError(f"model {text!r}: unknown baseline {baseline!r}")
    if pooling is not None and (pooling not in POOLINGS or baseline is not None):
        raise ValueError(f"model {text!r}: eval.pooling must be one of {', '.join(POOLINGS)}, without a baseline")
    return ModelSpec(name, overrides, baseline, source, pooling)


DEFAULT_MODELS = ("causal2vec", "eos", "mean", "echo", "bidirectional")
DEFAULT_SEEDS = (0, 1, 2)


class RunError(RuntimeError):
    """One (model, seed) could not be trained or evaluated; the others go on."""


def _run(args: list[str]) -> None:
    print("+ python " + " ".join(args), flush=True)
    if subprocess.run([sys.executable, *args], cwd=REPO_ROOT).returncode != 0:
        raise RunError(f"failed: python {' '.join(args)}")


def train(config: str, spec: ModelSpec, seed: int, folder: Path, extra: list[str]) -> None:
    """Fit one (model, seed) into `folder` unless its export exists (made with this very config: else an error);
    resume an unfinished run; restart one that died before its first checkpoint."""
    sets = [*extra, *spec.overrides, f"seed={seed}", f"model.seed={seed}"]  # the seed last: nothing overrides it
    saved = folder / "train_config.yaml"
    if saved.is_file():
        conflicts = resume_conflicts(yaml.safe_load(saved.read_text()), load_config(config, sets))
        if conflicts:
            raise RunError(f"{folder} was trained with another config ({'; '.join(conflicts)}): move it away")
    if (folder / "model" / "model.safetensors").is_file():
        return
    args = ["-m", "train", "fit", "--config", config, "--output", str(folder)]
    if any((folder / "checkpoints").glob("step-*")):
        raise RunError(
            f"{folder} holds an unfinished run of the former training loop (step-N checkpoints): move it away"
        )
    if last_checkpoint(folder):
        args.append("--resume")
    elif folder.exists():
        args.append("--overwrite")  # died before its first checkpoint: nothing in it worth keeping
    _run(args + [a for s in sets for a in ("--set", s)])


def evaluate(model: Path, spec: ModelSpec, output: Path, threads: int | None, cache: Path | None = None) -> None:
    """The dev battery on `model` (as `spec.baseline` or with `spec.pooling`, if set) into `output`, unless it is
    there already; embeddings cached in `cache` (None: evaluation's default folder)."""
    if (output / "summary.json").is_file():
        return
    args = ["-m", "evaluation", "run", "--model", str(model), "--battery", "--dtype", "bf16", "--output", str(output)]
    if spec.baseline:
        args += ["--baseline", spec.baseline]
    if spec.pooling:
        args += ["--pooling", spec.pooling]
    if threads:
        args += ["--threads", str(threads)]
    if cache is not None:
        args += ["--cache", str(cache)]
    _run(args)


def scores(folder: Path) -> dict[str, float]:
    """Main scores x100 by task, from an evaluation folder's `summary.json`."""
    rows = json.loads((folder / "summary.json").read_text())["results"]
    return {r["task"]: 100 * r["score"] for r in rows}


def aggregate(per_seed: dict[int, dict[str, float]]) -> dict[str, dict[str, Any]]:
    """task -> mean, std (sample; 0 for one seed), worst score and its seed, over seeds; plus `dev_avg`, the mean
    over the battery's tasks other than the selection ones, taken per seed first."""
    tasks = [t for t in DEV_BATTERY if all(t in s for s in per_seed.values())]
    rows = {seed: dict(s) for seed, s in per_seed.items()}
    for s in rows.values():
        s["dev_avg"] = statistics.fmean(s[t] for t in tasks if t not in SELECTION_TASKS)
    out = {}
    for task in [*tasks, "dev_avg"]:
        values = {seed: s[task] for seed, s in rows.items()}
        worst = min(values, key=values.get)
        out[task] = {
            "mean": statistics.fmean(values.values()),
            "std": statistics.stdev(values.values()) if len(values) > 1 else 0.0,
            "worst": values[worst],
            "worst_seed": worst,
            "seeds": values,
        }
    return out


def table(results: dict[str, dict[str, dict[str, Any]]], wall: dict[str, float]) -> str:
    """Markdown: one row per model, `mean ± std (worst)` per task, then the dev average and train wall time."""
    tasks = [t for t in [*DEV_BATTERY, "dev_avg"] if any(t in r for r in results.values())]
    head = ["model", "seeds", *tasks, "train wall s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, agg in results.items():
        n = len(next(iter(agg.values()))["seeds"]) if agg else 0
        cells = [name, str(n)]
        for task in tasks:
            a = agg.get(task)
            cells.append("-" if a is None else f"{a['mean']:.2f} ± {a['std']:.2f} ({a['worst']:.2f})")
        cells.append(f"{wall[name]:.0f}" if name in wall else "-")
        lines.append("| " + " | ".join(cells) + " |")
    note = (
        "\nScores x100, mean ± sample std over seeds (worst seed in brackets). "
        f"dev_avg: mean of {', '.join(t for t in DEV_BATTERY if t not in SELECTION_TASKS)} per seed "
        f"({', '.join(SELECTION_TASKS)} is for choosing settings only).\n"
    )
    return "\n".join(lines) + "\n" + note


def train_wall(runs: list[Path]) -> float | None:
    """Mean training wall time of these run folders; None if one has no metrics (e.g. trained elsewhere)."""
    walls = [summary(run).get("wall_time_s") for run in runs]
    return statistics.fmean(walls) if walls and None not in walls else None


def tabled(output: Path, seeds: list[int] | None = None) -> dict[str, dict[int, dict[str, float]]]:
    """Every evaluated (model, seed) under `output`, by model folder, whatever command made it: model -> seed ->
    scores (`seeds` keeps only those)."""
    found: dict[str, dict[int, dict[str, float]]] = {}
    for model in sorted(p for p in output.iterdir() if p.is_dir()) if output.is_dir() else []:
        if (model / "summary.json").is_file():  # NAME-untrained: once, no seed
            found[model.name] = {0: scores(model)}
            continue
        per_seed = {}
        for run in model.glob("seed-*"):
            seed = run.name.removeprefix("seed-")
            if seed.isdigit() and (seeds is None or int(seed) in seeds) and (run / "eval" / "summary.json").is_file():
                per_seed[int(seed)] = scores(run / "eval")
        if per_seed:
            found[model.name] = dict(sorted(per_seed.items()))
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.seeds", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", default="default", help="train config (YAML file or a name in train/configs/)")
    parser.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        help=f"default: {' '.join(map(str, DEFAULT_SEEDS))} (--table-only alone: every seed found)",
    )
    parser.add_argument(
        "--models", nargs="+", help=f"default: {' '.join(DEFAULT_MODELS)} (--table-only alone: every model in OUTPUT)"
    )
    parser.add_argument("--untrained", nargs="*", default=[], help="baselines evaluated untrained (e.g. encoder)")
    parser.add_argument("--output", type=Path, default=REPO_ROOT / "runs" / "seeds")
    parser.add_argument("--threads", type=int, help="torch CPU threads for evaluation")
    parser.add_argument("--cache", type=Path, help="embedding cache of the evaluations (default: evaluation's own)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override for every run")
    parser.add_argument("--table-only", action="store_true", help="train and evaluate nothing: table what exists")
    args = parser.parse_args(argv)
    if args.table_only and args.models is None and not args.untrained:
        found = tabled(args.output, args.seeds)
        walls = {name: train_wall([args.output / name / f"seed-{s}" for s in runs]) for name, runs in found.items()}
        wall = {name: w for name, w in walls.items() if w is not None}
        text = table({name: aggregate(per_seed) for name, per_seed in found.items()}, wall)
        print(text if found else f"nothing evaluated in {args.output}")
        return 0
    try:
        specs = [parse_model(m) for m in args.models or DEFAULT_MODELS]
    except ValueError as err:
        parser.error(str(err))
    args.seeds = args.seeds or list(DEFAULT_SEEDS)
    for i, spec in enumerate(specs):  # checked before anything trains
        sources = {s.name: s for s in specs[:i]}
        if spec.source is not None and spec.source not in sources:
            parser.error(f"{spec.name}: from={spec.source} must name a model listed before it")
        if spec.source is not None and sources[spec.source].baseline is not None:
            parser.error(f"{spec.name}: from={spec.source}, a baseline: pooling ablations apply to Causal2Vec runs")
    if any(s.split("=")[0] in ("seed", "model.seed") for s in args.set):
        parser.error("--seeds sets seed and model.seed; do not --set them")
    names = [s.name for s in specs] + [f"{n}-untrained" for n in args.untrained]
    if len(set(names)) != len(names):
        parser.error(f"model names repeat: {names}")

    results: dict[str, dict[str, dict[str, Any]]] = {}
    wall: dict[str, float] = {}
    failures: list[str] = []
    if args.untrained:
        init = args.output / "untrained-init"
        if not args.table_only:  # kept if it is what init builds now, else refused naming what differs
            _run(["-m", "train", "init", "--output", str(init), "--reuse"])
        for name in args.untrained:
            folder = args.output / f"{name}-untrained"
            if not args.table_only:
                evaluate(init, ModelSpec(name, baseline=name), folder, args.threads, args.cache)
            if (folder / "summary.json").is_file():
                results[f"{name}-untrained"] = aggregate({0: scores(folder)})
    for spec in specs:
        per_seed, runs = {}, []
        for seed in args.seeds:
            run = args.output / (spec.source or spec.name) / f"seed-{seed}"
            evaluation = args.output / spec.name / f"seed-{seed}" / "eval"
            if not args.table_only:
                try:
                    if spec.source is None:
                        train(args.config, spec, seed, run, args.set)
                    evaluate(run / "model", spec, evaluation, args.threads, args.cache)
                except RunError as err:
                    failures.append(f"{spec.name} seed {seed}: {err}")
                    print(f"error: {err}", file=sys.stderr, flush=True)
            if (evaluation / "summary.json").is_file():
                per_seed[seed] = scores(evaluation)
                runs.append(run)
        if per_seed:
            results[spec.name] = aggregate(per_seed)
            wall_s = train_wall(runs)
            if wall_s is not None:
                wall[spec.name] = wall_s
    text = table(results, wall)
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "table.md").write_text(text)
    (args.output / "table.json").write_text(json.dumps({"results": results, "train_wall_s": wall}, indent=2) + "\n")
    print(text)
    if failures:
        print("not in the table (failed):\n  " + "\n  ".join(failures), file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
