"""The evaluation harness end to end on fixture data with a tiny model: scores, outputs, cache, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from eval_fixtures import STS_ROWS, make_data

from causal2vec import REPO_ROOT
from causal2vec.instructions import load_instructions
from evaluation import metrics
from evaluation.__main__ import main
from evaluation.embedder import Embedder
from evaluation.run import evaluate

TASKS = ["stsb", "scifact", "trec", "mr"]


def count_forwards(module):
    calls = []
    module.register_forward_hook(lambda *a: calls.append(1))
    return calls


def test_scores_match_direct_computation(tiny, tmp_path):
    root = make_data(tmp_path / "data")
    embedder = Embedder(tiny, cache_dir=None, show_progress_bar=False)
    results = evaluate(embedder, TASKS, root, tmp_path / "out", limit=None)
    prompt = tiny.config.query_prompt(load_instructions()["stsb"])
    e1 = tiny.encode([r[0] for r in STS_ROWS], prompt=prompt)
    e2 = tiny.encode([r[1] for r in STS_ROWS], prompt=prompt)
    expected = metrics.sts_scores(e1, e2, [r[2] for r in STS_ROWS])["cosine_spearman"]
    sts = results["stsb"]["scores"]["test"][0]
    assert sts["main_score"] == pytest.approx(expected, abs=1e-6)
    sci = results["scifact"]["scores"]["test"][0]
    assert results["scifact"]["n"] == 3 and results["scifact"]["documents"] == 5
    assert 0 < sci["ndcg_at_10"] <= 1 and sci["recall_at_100"] == 1.0  # 5 documents: all are retrieved
    assert results["trec"]["n"] == 6
    assert len(results["mr"]["scores"]["test"][0]["scores_per_experiment"]) == 10  # cross-validated
    saved = {p.stem: json.loads(p.read_text()) for p in (tmp_path / "out" / "results").rglob("*.json")}
    assert set(saved) == {"STSBenchmark", "SciFact", "TREC", "MR", "model_meta"}  # mteb's results folder
    for task in TASKS:
        mteb_name = results[task]["task_name"]
        assert saved[mteb_name]["dataset_revision"].startswith("local-")
        assert saved[mteb_name]["scores"]["test"][0]["main_score"] == pytest.approx(results[task]["score"], abs=1e-6)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert [r["task"] for r in summary["results"]] == TASKS
    assert "| stsb | test | cosine_spearman |" in (tmp_path / "out" / "summary.md").read_text()


def test_retrieval_instruction_only_on_queries(tiny, tmp_path):
    root = make_data(tmp_path / "data")
    embedder = Embedder(tiny, cache_dir=tmp_path / "cache", show_progress_bar=False)
    evaluate(embedder, ["scifact"], root, None)
    docs = [f"{t} {x}" for t, x in __import__("eval_fixtures").DOCS.values()]
    key_plain = embedder.embed(docs, None)  # cached with no instruction: no new forward pass
    assert embedder.encode_calls == 2 and embedder.cache.hits == 1
    np.testing.assert_allclose(key_plain, tiny.encode(docs), atol=1e-5)


def test_rerun_uses_cache_and_never_calls_the_model(tiny, tmp_path):
    root = make_data(tmp_path / "data")
    first = evaluate(Embedder(tiny, cache_dir=tmp_path / "cache", show_progress_bar=False), TASKS, root, None)
    calls = count_forwards(tiny)
    again = Embedder(tiny, cache_dir=tmp_path / "cache", show_progress_bar=False)
    second = evaluate(again, TASKS, root, None)
    assert calls == [] and again.encode_calls == 0 and again.cache.misses == 0
    for task in TASKS:
        assert second[task]["scores"] == first[task]["scores"]
    # a different dtype is a different cache entry
    bf16 = Embedder(tiny, cache_dir=tmp_path / "cache", dtype="bf16", show_progress_bar=False)
    evaluate(bf16, ["stsb"], root, None)
    assert len(calls) > 0 and bf16.encode_calls == 2  # sentence1 and sentence2


def test_limit_subsamples(tiny, tmp_path):
    root = make_data(tmp_path / "data")
    r = evaluate(Embedder(tiny, show_progress_bar=False), ["stsb", "scifact"], root, None, limit=4, corpus_limit=3)
    assert r["stsb"]["n"] == 4
    assert r["scifact"]["documents"] == 3  # judged documents of 3 queries


def test_cli_on_checkpoint_folder_and_baseline(tiny, tmp_path, capsys):
    root = make_data(tmp_path / "data")
    tiny.save_pretrained(tmp_path / "ckpt")
    args = [
        "run",
        "--model",
        str(tmp_path / "ckpt"),
        "--data",
        str(root),
        "--tasks",
        "stsb",
        "trec",
        "--cache",
        str(tmp_path / "cache"),
    ]
    assert main([*args, "--output", str(tmp_path / "out")]) == 0
    assert main([*args, "--output", str(tmp_path / "out2")]) == 0
    summary = json.loads((tmp_path / "out2" / "summary.json").read_text())
    assert summary["encode_calls"] == 0 and summary["cache_hits"] == 4  # rerun: all from the cache
    first = json.loads(next((tmp_path / "out").rglob("STSBenchmark.json")).read_text())["scores"]
    assert json.loads(next((tmp_path / "out2").rglob("STSBenchmark.json")).read_text())["scores"] == first
    assert main([*args, "--baseline", "echo", "--output", str(tmp_path / "echo")]) == 0
    echo = json.loads((tmp_path / "echo" / "summary.json").read_text())
    assert echo["encode_calls"] == 4 and echo["model"].endswith("[echo]")


def test_card_gets_the_scores_and_keeps_the_rest(tiny, tmp_path):
    from huggingface_hub import ModelCard

    from causal2vec.card import write_model_card

    root = make_data(tmp_path / "data")
    folder = tmp_path / "ckpt"
    tiny.save_pretrained(folder)
    write_model_card(folder, tiny.config, ["random llama", "random bert"], training={"steps": 3}, loss_curve="l.png")
    (folder / "README.md").write_text((folder / "README.md").read_text() + "\nA note someone added.\n")
    args = ["run", "--model", str(folder), "--data", str(root), "--no-cache", "--card"]
    assert main([*args, "--tasks", "stsb", "trec", "--output", str(tmp_path / "a"), "--limit", "4"]) == 0
    assert main([*args, "--tasks", "stsb", "--output", str(tmp_path / "b")]) == 0  # replaces stsb, keeps trec
    card = (folder / "README.md").read_text()
    trec = json.loads((tmp_path / "a" / "summary.json").read_text())["results"][1]
    stsb = json.loads((tmp_path / "b" / "summary.json").read_text())["results"][0]
    assert card.startswith("---\nlibrary_name: transformers") and "| steps | 3 |" in card
    assert card.count("## Evaluation") == 1 and "No evaluation results" not in card
    assert f"| stsb | test | cosine_spearman | {100 * stsb['score']:.2f} | {stsb['n']} | fp32, instructions |" in card
    how = "fp32, instructions, seeded subsample of 4"
    assert f"| trec | test | accuracy | {100 * trec['score']:.2f} | {trec['n']} | {how} |" in card
    assert card.count("| stsb |") == 1
    assert card.rstrip().endswith("![training loss](l.png)\n\nA note someone added.")
    assert ModelCard.load(folder / "README.md").data.causal2vec["evaluation"] == [
        {**{k: trec[k] for k in ("task", "split", "metric", "score", "n")}, "how": how, "name": "trec"},  # a sample
        {
            **{k: stsb[k] for k in ("task", "split", "metric", "score", "n")},
            "how": "fp32, instructions",
            "name": "STSBenchmark",
        },
    ], "the rows are data too"
    data = ModelCard.load(folder / "README.md").data  # the metadata the Hub and mteb read
    assert data.language == ["en"] and data.library_name == "transformers" and data.model_name == "ckpt"
    results = {r.dataset_type: r for r in data.eval_results}
    assert sorted(results) == ["local/trec", "mteb/stsbenchmark-sts"]  # a sample is not MTEB's task
    results = {r.dataset_name: r for r in data.eval_results}
    assert results["STSBenchmark"].source_name == "MTEB" and results["trec"].source_name is None
    assert results["STSBenchmark"].task_type == "STS" and results["STSBenchmark"].dataset_split == "test"
    assert results["STSBenchmark"].metric_value == round(100 * stsb["score"], 2)
    assert (results["trec"].task_type, results["trec"].metric_type) == ("Classification", "accuracy")
    st_config = json.loads((folder / "config_sentence_transformers.json").read_text())
    instruction = json.loads((REPO_ROOT / "causal2vec" / "instructions.json").read_text())["scifact"]
    assert st_config["prompts"]["SciFact"] == tiny.config.query_prompt(instruction)
    assert st_config["prompts"]["query"] == tiny.config.query_prompt()
    assert st_config["requirements"] == {"sentence_transformers": ">=5.4.0"}


def test_cli_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        main(["run", "--model", str(tmp_path / "nope"), "--tasks", "stsb"])


def test_baselines_on_one_decoder_do_not_share_cache_entries(tiny, tmp_path):
    from causal2vec.baselines import build_baseline

    root = make_data(tmp_path / "data")
    eos = evaluate(Embedder(build_baseline("eos", tiny), cache_dir=tmp_path / "c"), ["stsb"], root, None)
    mean_embedder = Embedder(build_baseline("mean", tiny), cache_dir=tmp_path / "c")
    mean = evaluate(mean_embedder, ["stsb"], root, None)
    assert mean_embedder.encode_calls == 2  # same weights, different pooling: not a cache hit
    assert mean["stsb"]["scores"] != eos["stsb"]["scores"]


@pytest.mark.slow
def test_sentence_transformer_folder_and_encoder_baseline_agree(tmp_path):
    """all-MiniLM-L6-v2 loaded by sentence-transformers scores like the default model's "encoder" baseline."""
    from causal2vec.assemble import build_model
    from causal2vec.baselines import build_baseline
    from causal2vec.parts import default_encoder_path

    root = make_data(tmp_path / "data")
    st = Embedder.from_path(default_encoder_path(), use_instructions=False, show_progress_bar=False)
    assert st.is_sentence_transformer
    encoder = Embedder(build_baseline("encoder", build_model()), use_instructions=False, show_progress_bar=False)
    # cosine-based tasks only: the sentence-transformers model also L2-normalizes, which changes the classifier
    a = evaluate(st, ["stsb", "scifact"], root, None)
    b = evaluate(encoder, ["stsb", "scifact"], root, None)
    for task in ("stsb", "scifact"):
        assert a[task]["scores"]["test"][0]["main_score"] == pytest.approx(
            b[task]["scores"]["test"][0]["main_score"], abs=1e-4
        )
    with pytest.raises(ValueError, match="needs a Causal2Vec checkpoint"):
        Embedder.from_path(default_encoder_path(), baseline="eos")


def test_sentence_transformer_gets_its_own_prompts_not_ours(tmp_path):
    """A plain SentenceTransformer: its configured "query"/"document" prompts, never our instruction template."""
    from eval_fixtures import make_sentence_transformer

    root = make_data(tmp_path / "data")
    folder = make_sentence_transformer(tmp_path / "with", {"query": "query: ", "document": "passage: "})
    st = Embedder.from_path(folder, cache_dir=None, show_progress_bar=False)
    assert st.prompt("Retrieve semantically similar text") == "query: " and st.prompt(None) == "passage: "
    assert st.is_sentence_transformer and not st.applies_instructions
    texts = [r[0] for r in STS_ROWS]
    np.testing.assert_allclose(st.embed(texts, "any instruction"), st.model.encode(texts, prompt="query: "), atol=1e-6)
    np.testing.assert_allclose(st.embed(texts, None), st.model.encode(texts, prompt="passage: "), atol=1e-6)
    result = evaluate(st, ["stsb"], root, None)["stsb"]
    assert result["instruction"] is None and result["prompt"] == "query: "
    # without configured prompts: no prompt at all (not "Instruct: ...\nQuery: ")
    plain = Embedder.from_path(make_sentence_transformer(tmp_path / "plain"), cache_dir=None, show_progress_bar=False)
    assert plain.prompt("Retrieve semantically similar text") == "" and plain.prompt(None) == ""
    np.testing.assert_allclose(plain.embed(texts, "an instruction"), plain.model.encode(texts), atol=1e-6)
    assert Embedder.from_path(folder, use_instructions=False, cache_dir=None).prompt("x") == ""


def test_causal2vec_keeps_its_instruction_prompts(tiny):
    embedder = Embedder(tiny, cache_dir=None)
    assert embedder.applies_instructions
    assert embedder.prompt("Find it") == tiny.config.query_prompt("Find it") and embedder.prompt(None) == ""


def test_editing_model_code_or_tokenizer_files_invalidates_the_cache(tiny, tmp_path):
    from evaluation.cache import folder_fingerprint

    folder = tmp_path / "ckpt"
    tiny.save_pretrained(folder)
    texts = [r[0] for r in STS_ROWS]
    first = Embedder.from_path(folder, cache_dir=tmp_path / "cache", show_progress_bar=False)
    first.embed(texts)
    again = Embedder.from_path(folder, cache_dir=tmp_path / "cache", show_progress_bar=False)
    again.embed(texts)
    assert again.encode_calls == 0, "nothing changed: served from the cache"
    code = folder / "modeling_causal2vec.py"
    code.write_text(code.read_text() + "\n# a local edit\n")
    edited = Embedder.from_path(folder, cache_dir=tmp_path / "cache", show_progress_bar=False)
    edited.embed(texts)
    assert edited.encode_calls == 1, "the folder's code changed: the cache entry is not reused"
    merges = folder / "merges.txt"  # a BPE tokenizer's merges (sentencepiece's *.model alike)
    merges.write_text("#version: 0.2\nt h\n")
    before = folder_fingerprint(folder)
    merges.write_text("#version: 0.2\nh e\n")
    assert folder_fingerprint(folder) != before, "tokenizer files are part of the identity"
    before = folder_fingerprint(folder)
    (folder / "README.md").write_text("# card, rewritten by `run --card`\n")
    assert folder_fingerprint(folder) == before, "the model card does not change embeddings"


def test_cache_key_has_the_evaluation_code_version(monkeypatch):
    from evaluation import cache

    key = cache.embedding_key("m", ["a"], prompt="")
    monkeypatch.setattr(cache, "CACHE_VERSION", cache.CACHE_VERSION + 1)
    assert cache.embedding_key("m", ["a"], prompt="") != key


def test_compare_tables_runs(tiny, tmp_path, capsys):
    root = make_data(tmp_path / "data")
    tiny.save_pretrained(tmp_path / "ckpt")
    base = ["run", "--model", str(tmp_path / "ckpt"), "--data", str(root), "--no-cache"]
    assert main([*base, "--tasks", "stsb", "trec", "--output", str(tmp_path / "c2v")]) == 0
    mean_args = ["--tasks", "stsb", "--baseline", "mean", "--limit", "4", "--output", str(tmp_path / "mean")]
    assert main([*base, *mean_args]) == 0
    capsys.readouterr()
    out = tmp_path / "tables" / "compare.md"
    assert main(["compare", str(tmp_path / "c2v"), str(tmp_path / "mean"), "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    table = out.read_text()
    assert table in printed
    lines = table.strip().splitlines()
    assert lines[0] == "| run | model | dtype | instructions | stsb (cosine_spearman) | trec (accuracy) |"
    c2v = json.loads((tmp_path / "c2v" / "summary.json").read_text())["results"]
    mean = json.loads((tmp_path / "mean" / "summary.json").read_text())["results"]
    assert lines[2].startswith("| c2v |") and f"| {100 * c2v[0]['score']:.2f} (n=6) |" in lines[2]
    assert f"| {100 * c2v[1]['score']:.2f} |" in lines[2]  # trec: only one run, no n note
    assert lines[3].startswith("| mean |") and "[mean]" in lines[3]
    assert lines[3].endswith(f"| {100 * mean[0]['score']:.2f} (n=4) | - |")  # no trec run: a dash
    with pytest.raises(FileNotFoundError, match="summary.json does not exist"):
        main(["compare", str(tmp_path / "data")])
    # a second folder of the same model (another task) joins its row instead of adding one
    assert main([*base, "--tasks", "mr", "--output", str(tmp_path / "c2v-mr")]) == 0
    capsys.readouterr()
    assert main(["compare", str(tmp_path / "c2v"), str(tmp_path / "mean"), str(tmp_path / "c2v-mr")]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 4 and lines[0].endswith("| trec (accuracy) | mr (accuracy) |")
    mr = json.loads((tmp_path / "c2v-mr" / "summary.json").read_text())["results"][0]
    assert lines[2].startswith("| c2v, c2v-mr |") and lines[2].endswith(f"| {100 * mr['score']:.2f} |")
    assert lines[3].endswith("| - |")


def test_compare_merges_a_models_folders_and_a_rescored_task_moves_to_the_end(tmp_path):
    """Columns in first-seen order over the merged rows: the same model's folders join one row wherever they are
    listed, and a task it scores again takes the later result (and its place) in that row."""
    from evaluation.compare import compare

    def run(name, model, *results):
        rows = [{"task": t, "split": "test", "metric": m, "score": v, "n": 10} for t, m, v in results]
        (tmp_path / name).mkdir()
        summary = {"model": model, "dtype": "fp32", "instructions": True, "results": rows}
        (tmp_path / name / "summary.json").write_text(json.dumps(summary))
        return tmp_path / name

    folders = [
        run("a1", "A", ("stsb", "s", 0.5)),
        run("b", "B", ("trec", "acc", 0.6)),
        run("a2", "A", ("mr", "acc", 0.7)),
    ]
    lines = compare(folders).splitlines()
    assert lines[0] == "| run | model | dtype | instructions | stsb (s) | mr (acc) | trec (acc) |"
    assert lines[2] == "| a1, a2 | `A` | fp32 | yes | 50.00 | 70.00 | - |"
    again = run("a3", "A", ("stsb", "s2", 0.9))
    lines = compare([folders[0], folders[2], again]).splitlines()
    assert lines[0].endswith("| mr (acc) | stsb (s2) |") and lines[2].endswith("| 70.00 | 90.00 |")
