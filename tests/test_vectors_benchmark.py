"""`python -m benchmarks.vectors` on a tiny random export: its full-size rows are the dev battery's, its prefix rows
score `encode(truncate_dim=k)`, its int8 / ubinary rows follow sentence-transformers' quantized search; and
`python -m evaluation run --truncate-dim`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import TEXTS
from eval_fixtures import CLASS_TEXTS, STS_ROWS, make_data, write_tsv

from benchmarks.vectors import default_dims, dequantize, main, quantize, quantized_search, retrieval_sample
from causal2vec.assemble import build_random
from causal2vec.dtypes import DTYPES
from causal2vec.instructions import load_instructions
from evaluation.__main__ import main as evaluation_main
from evaluation.embedder import Embedder
from evaluation.metrics import normalize
from evaluation.run import evaluate, summary_rows
from evaluation.tasks import DEV_BATTERY

pytestmark = pytest.mark.usefixtures("one_thread")
TOP_K, MULTIPLIER, CORPUS = 10, 2, 40  # 20 candidates out of a sample of 40 of the 60 documents


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> tuple[Path, Path]:
    """A tiny random export and the fixture data, SciFact replaced by 60 documents and 12 queries, each the text
    of its first judged document (so that even a random model ranks, and each precision ranks differently)."""
    tmp = tmp_path_factory.mktemp("vectors")
    root = make_data(tmp / "data")
    texts = [t for group in CLASS_TEXTS.values() for t in group] + [t for r in STS_ROWS for t in r[:2]] + TEXTS
    docs = {f"x{i}": texts[i % len(texts)] + (f" ({i})" if i >= len(texts) else "") for i in range(60)}
    queries = {f"q{i}": docs[f"x{5 * i}"] for i in range(12)}
    sci = root / "scifact"
    for name, items in (("corpus", docs), ("queries", queries)):
        lines = [json.dumps({"_id": k, "title": "", "text": v}) + "\n" for k, v in items.items()]
        (sci / f"{name}.jsonl").write_text("".join(lines))
    qrels = [(f"q{i}", f"x{5 * i + j}", 1) for i in range(12) for j in (0, 1)]
    write_tsv(sci / "qrels" / "test.tsv", ["query-id", "corpus-id", "score"], qrels)
    folder = tmp / "model"
    build_random().save_pretrained(folder)
    return folder, root


class EncodeEmbedder(Embedder):
    """Embeds with `model.encode(..., truncate_dim=k)` itself, with the battery's prompts (no cache); `served`:
    the full embedding cut to k dimensions by the server's `shorten` (renormalised) instead."""

    def __init__(self, model: Any, dim: int, dtype: str = "bf16", served: bool = False):
        super().__init__(model, "encode", cache_dir=None, dtype=dtype, show_progress_bar=False)
        self.dim, self.served = dim, served

    def embed(self, texts: list[str], instruction: str | None = None, desc: str = "") -> np.ndarray:
        prompt = self.prompt(instruction) or None
        if self.served:
            from serve.app import shorten

            return shorten(self.model.encode(texts, prompt=prompt, dtype=DTYPES[self.dtype]), self.dim)
        return self.model.encode(texts, prompt=prompt, dtype=DTYPES[self.dtype], truncate_dim=self.dim)


def battery(embedder: Embedder, root: Path) -> dict[str, float]:
    """Main score of every battery task, as `python -m evaluation run --battery` gets them."""
    results = evaluate(embedder, list(DEV_BATTERY), root, None, load_instructions(), task_limits=DEV_BATTERY)
    return {r["task"]: r["score"] for r in summary_rows(results)}


def pytrec_scores(qrels: dict, run: dict) -> dict[str, float]:
    """nDCG@10 and recall@10 over the judged queries, straight from pytrec_eval."""
    import pytrec_eval

    per_query = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10", "recall.10"}).evaluate(run)
    return {
        "ndcg_at_10": float(np.mean([m["ndcg_cut_10"] for m in per_query.values()])),
        "recall_at_10": float(np.mean([m["recall_10"] for m in per_query.values()])),
    }


def by_hand(query: np.ndarray, docs: np.ndarray, precision: str, k: int, multiplier: int) -> list[list[tuple]]:
    """sentence-transformers' quantized search, one query and document at a time, rescoring `multiplier` x `k`
    candidates (1: none): (row, score) best first."""
    lo, hi = docs.min(0), docs.max(0)
    steps = np.where(hi == lo, 1, (hi - lo) / 255)

    def int8(x: np.ndarray) -> np.ndarray:
        return (np.clip(np.floor((x - lo) / steps), 0, 255) - 128).astype(np.int64)

    def bits(x: np.ndarray) -> np.ndarray:
        return np.packbits(x > 0, axis=-1)

    stored = int8(docs) if precision == "int8" else bits(docs)
    restored = (stored + 128) * steps + lo if precision == "int8" else (docs > 0).astype(np.float64)
    out = []
    for q in query:
        if precision == "int8":
            first = [int(int8(q) @ d) for d in stored]
        else:
            first = [-int(np.unpackbits(bits(q) ^ d).sum()) for d in stored]
        cands = sorted(range(len(docs)), key=lambda j: (-first[j], j))[: k * multiplier]
        scores = {j: float(q @ restored[j]) if multiplier > 1 else first[j] for j in cands}
        out.append([(j, scores[j]) for j in sorted(cands, key=lambda j: -scores[j])[:k]])
    return out


def test_rows_are_the_battery_prefixes_and_quantized_search(setup, tmp_path, monkeypatch, capsys):
    folder, root = setup
    monkeypatch.setitem(DEV_BATTERY, "scifact", (None, CORPUS))
    out = tmp_path / "vectors.json"
    args = ["--model", str(folder), "--data", str(root), "--cache", str(tmp_path / "cache"), "--output", str(out)]
    sizes = ["--dims", "64", "16", "--quantize-dims", "64", "16"]
    result = main([*args, *sizes, "--rescore-multiplier", str(MULTIPLIER), "--threads", "1"])
    printed = capsys.readouterr().out
    assert json.loads(out.read_text()) == result and result["command"].startswith("python -m benchmarks.vectors ")
    assert "--rescore-multiplier 2" in result["command"] and result["dims"] == [64, 16]
    assert "| 64 (full) | 256 | " in printed and "| precision | bytes / vector |" in printed

    # the full-size rows are the battery's, embedded once: as many forwards as the battery on an empty cache
    full = Embedder.from_path(folder, dtype="bf16", cache_dir=tmp_path / "fresh", show_progress_bar=False)
    expected = battery(full, root)
    short = {(r["dims"], r["task"]): r for r in result["shorter"]}
    for task, score in expected.items():
        assert short[64, task]["score"] == pytest.approx(score, abs=1e-9), task
    assert result["forwards"] == full.encode_calls > 0
    again = main([*args, "--dims", "64", "--tasks", "stsb-dev", "--top-k", "3", "--rescore-multiplier", "3"])
    assert again["forwards"] == 0, "all from the cache"
    assert again["samples"] == {
        "stsb-dev": {"limit": None, "corpus_limit": None},
        "scifact": {"limit": None, "corpus_limit": CORPUS},
    }

    # a prefix row scores what encode(truncate_dim=k) returns, and the server's renormalised `dimensions`
    for task, score in battery(EncodeEmbedder(full.model, 16), root).items():
        assert short[16, task]["score"] == pytest.approx(score, abs=1e-9), task
    for task, score in battery(EncodeEmbedder(full.model, 16, served=True), root).items():
        assert short[16, task]["score"] == pytest.approx(score, abs=1e-6), task
    assert short[16, "scifact"]["bytes"] == 64 and short[16, "stsb-dev"]["n"] == len(STS_ROWS)
    assert short[16, "scifact"]["score"] != short[64, "scifact"]["score"], "a prefix scores otherwise"

    # precision rows: float32 is the battery's SciFact; int8 / ubinary follow the recipe, done by hand here
    assert [r["bytes"] for r in result["smaller"]] == [256, 64, 64, 8, 8, 64, 16, 16, 2, 2]  # 64, then 16 dims
    rows = {(r["precision"], r["rescore"]): r for r in result["smaller"] if r["dims"] == 64}
    assert rows["float32", False]["ndcg_at_10"] == pytest.approx(expected["scifact"], abs=1e-9)
    prefix = {(r["precision"], r["rescore"]): r["ndcg_at_10"] for r in result["smaller"] if r["dims"] == 16}
    assert prefix["float32", False] == pytest.approx(short[16, "scifact"]["score"], abs=1e-9)  # the prefix row's
    assert {r["dims"] for r in again["smaller"]} == {64, 32}, "default: full and half"

    # --summarize: mean ± std over runs' JSON (here one run twice: std 0), refusing runs with other rows
    first = tmp_path / "first.json"  # `out` holds the last run's (again)
    first.write_text(json.dumps(result))
    capsys.readouterr()
    main(["--summarize", str(first), str(first)])
    table = capsys.readouterr().out
    assert f"| 16 | int8 | 16 | yes | {100 * prefix['int8', True]:.2f} ± 0.00 " in table
    assert f"| 64 | {100 * short[64, 'stsb-dev']['score']:.2f} ± 0.00 " in table
    with pytest.raises(SystemExit):
        main(["--summarize", str(first), str(out)])
    assert "do not hold the same rows" in capsys.readouterr().err
    assert rows["int8", True]["candidates"] == TOP_K * MULTIPLIER and rows["int8", True]["num_documents"] == CORPUS
    sample = retrieval_sample(full, root, load_instructions()["scifact"])
    query, docs = normalize(sample.query_emb), normalize(sample.doc_emb)
    ndcg = {key: round(r["ndcg_at_10"], 9) for key, r in rows.items()}
    assert ndcg["int8", False] != ndcg["int8", True] != ndcg["ubinary", True] != ndcg["ubinary", False]
    assert ndcg["ubinary", True] != ndcg["float32", False], "the rows rank otherwise: the checks below can fail"
    for k, multiplier, found in ((TOP_K, MULTIPLIER, result), (3, 3, again)):
        rows = {(r["precision"], r["rescore"]): r for r in found["smaller"] if r["dims"] == 64}
        for precision in ("int8", "ubinary"):
            for rescore in (False, True):
                ranked = by_hand(query, docs, precision, k, multiplier if rescore else 1)
                idx, val = quantized_search(query, docs, precision, k, multiplier, rescore)
                assert idx.tolist() == [[j for j, _ in r] for r in ranked], (k, precision, rescore)
                np.testing.assert_allclose(val, [[s for _, s in r] for r in ranked], rtol=1e-6)
                run = {q: {sample.doc_ids[j]: s for j, s in ranked[i]} for i, q in enumerate(sample.qids)}
                scores = pytrec_scores(sample.qrels, run)
                for metric in ("ndcg_at_10", "recall_at_10"):  # mteb rounds to 5 decimals
                    assert rows[precision, rescore][metric] == pytest.approx(scores[metric], abs=1e-5), (k, precision)


def test_quantize_is_sentence_transformers_with_corpus_ranges():
    from sentence_transformers.util import quantization

    docs = normalize(np.random.default_rng(0).normal(size=(30, 20)).astype(np.float32))
    stored, ranges = quantize(docs, "int8")
    assert stored.dtype == np.int8 and np.array_equal(ranges, [docs.min(0), docs.max(0)])
    assert np.array_equal(stored, quantization.quantize_embeddings(docs, "int8", calibration_embeddings=docs))
    np.testing.assert_allclose(dequantize(stored, "int8", ranges, 20), docs, atol=2 / 255)  # a bucket's width
    if hasattr(quantization, "_dequantize_embeddings"):  # sentence-transformers' own rescoring step
        np.testing.assert_array_equal(
            dequantize(stored, "int8", ranges, 20), quantization._dequantize_embeddings(stored, "int8", ranges)
        )
    packed, none = quantize(docs, "ubinary")
    assert none is None and packed.shape == (30, 3) and packed.dtype == np.uint8
    assert np.array_equal(dequantize(packed, "ubinary", None, 20), docs > 0)


def test_default_and_bad_dims(setup, tmp_path, capsys):
    folder, root = setup
    assert default_dims(1152) == [1152, 576, 256, 128] and default_dims(64) == [64, 32]
    args = ["--model", str(folder), "--data", str(root), "--cache", str(tmp_path / "c"), "--output", str(tmp_path)]
    for bad in ("0", "65"):
        with pytest.raises(SystemExit):
            main([*args, "--dims", "64", bad])
        assert f"--dims {bad}: each size must be from 1 to 64 (the embedding size)" in capsys.readouterr().err
    model = Embedder.from_path(folder, cache_dir=None).model
    for bad in (0, 65, 2.5):
        with pytest.raises(ValueError, match="truncate_dim must be"):
            Embedder(model, cache_dir=None, truncate_dim=bad)


def test_evaluation_run_truncate_dim(setup, tmp_path, capsys):
    folder, root = setup
    args = ["run", "--model", str(folder), "--data", str(root), "--no-cache", "--tasks", "stsb", "scifact"]
    assert evaluation_main([*args, "--truncate-dim", "16", "--output", str(tmp_path / "r")]) == 0
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["truncate_dim"] == 16 and summary["model"].endswith("[dim=16]")
    assert json.loads(next((tmp_path / "r").rglob("model_meta.json")).read_text())["embed_dim"] == 16
    model = Embedder.from_path(folder, cache_dir=None).model
    results = evaluate(EncodeEmbedder(model, 16, "fp32"), ["stsb", "scifact"], root, None)
    assert [r["score"] for r in summary["results"]] == pytest.approx([r["score"] for r in summary_rows(results)])
    with pytest.raises(SystemExit):
        evaluation_main([*args, "--truncate-dim", "16", "--card"])
    assert "do not combine it with --truncate-dim" in capsys.readouterr().err
    with pytest.raises(ValueError, match="from 1 to 64"):
        evaluation_main([*args, "--truncate-dim", "65", "--output", str(tmp_path / "bad")])
