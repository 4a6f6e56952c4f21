"""The mteb (v2) wrapper, offline: local mteb tasks built from fixture data, scored like the harness does."""

from __future__ import annotations

import mteb
import pytest
from datasets import Dataset, DatasetDict
from eval_fixtures import DOCS, QRELS, QUERIES, STS_ROWS, make_data, make_train_data
from mteb.abstasks.retrieval import AbsTaskRetrieval
from mteb.abstasks.retrieval_dataset_loaders import RetrievalSplitData
from mteb.abstasks.sts import AbsTaskSTS
from mteb.abstasks.task_metadata import TaskMetadata

from evaluation.embedder import Embedder
from evaluation.mteb_model import Causal2VecMTEB, meta_for_folder, training_datasets, training_files
from evaluation.run import evaluate

COMMON = {
    "description": "Local fixture task for tests.",
    "reference": "https://example.org",
    "dataset": {"path": "local/fixture", "revision": "1"},
    "category": "t2t",
    "eval_splits": ["test"],
    "eval_langs": ["eng-Latn"],
    "date": ("2020-01-01", "2020-01-02"),
    "dialect": [],
    "domains": [],
    "task_subtypes": [],
    "license": "cc-by-4.0",
    "annotations_creators": "derived",
    "modalities": ["text"],
    "sample_creation": "found",
    "bibtex_citation": "",
}
INSTRUCTIONS = {"LocalSTS": "Retrieve semantically similar text", "LocalRetrieval": "Find the passage"}


class LocalSTS(AbsTaskSTS):
    metadata = TaskMetadata(type="STS", name="LocalSTS", main_score="cosine_spearman", **COMMON)
    min_score = 0
    max_score = 5

    def load_data(self, **kwargs):
        columns = {
            "sentence1": [r[0] for r in STS_ROWS],
            "sentence2": [r[1] for r in STS_ROWS],
            "score": [r[2] for r in STS_ROWS],
        }
        self.dataset = DatasetDict({"test": Dataset.from_dict(columns)})
        self.data_loaded = True


class LocalRetrieval(AbsTaskRetrieval):
    metadata = TaskMetadata(type="Retrieval", name="LocalRetrieval", main_score="ndcg_at_10", **COMMON)

    def load_data(self, **kwargs):
        qrels: dict[str, dict[str, int]] = {}
        for q, d, s in QRELS:
            qrels.setdefault(q, {})[d] = s
        split = RetrievalSplitData(
            queries=Dataset.from_list([{"id": q, "text": QUERIES[q]} for q in qrels]),
            corpus=Dataset.from_list([{"id": d, "title": t, "text": x} for d, (t, x) in DOCS.items()]),
            relevant_docs=qrels,
            top_ranked=None,
        )
        self.dataset = {"default": {"test": split}}
        self.data_loaded = True


def test_mteb_evaluate_matches_the_harness(tiny, tmp_path):
    wrapper = Causal2VecMTEB(tiny, instructions=INSTRUCTIONS)
    assert wrapper.mteb_model_meta.embed_dim == tiny.config.embedding_dim
    result = mteb.evaluate(wrapper, [LocalSTS(), LocalRetrieval()], cache=None, show_progress_bar=False)
    scores = {r.task_name: r.scores["test"][0] for r in result.task_results}

    root = make_data(tmp_path / "data")
    ours = evaluate(
        Embedder(tiny, show_progress_bar=False),
        ["stsb", "scifact"],
        root,
        None,
        instructions={"stsb": INSTRUCTIONS["LocalSTS"], "scifact": INSTRUCTIONS["LocalRetrieval"]},
    )
    assert scores["LocalSTS"]["cosine_spearman"] == pytest.approx(
        ours["stsb"]["scores"]["test"][0]["cosine_spearman"], abs=1e-6
    )
    assert scores["LocalRetrieval"]["ndcg_at_10"] == pytest.approx(
        ours["scifact"]["scores"]["test"][0]["ndcg_at_10"], abs=1e-4
    )


def test_instruction_routing(tiny):
    from mteb.types import PromptType

    wrapper = Causal2VecMTEB(tiny, instructions=INSTRUCTIONS)
    meta = LocalRetrieval.metadata
    assert wrapper.get_task_instruction(meta, PromptType.query) == tiny.config.query_prompt("Find the passage")
    loader = [{"text": ["a document"]}]
    doc = wrapper.encode(
        loader, task_metadata=meta, hf_split="test", hf_subset="default", prompt_type=PromptType.document
    )
    query = wrapper.encode(
        loader, task_metadata=meta, hf_split="test", hf_subset="default", prompt_type=PromptType.query
    )
    assert (doc == tiny.encode(["a document"])).all()
    assert (query == tiny.encode(["a document"], prompt=tiny.config.query_prompt("Find the passage"))).all()


def test_model_meta_from_folder(tiny, tmp_path):
    tiny.save_pretrained(tmp_path / "ckpt")
    meta = meta_for_folder(tmp_path / "ckpt")
    assert meta.name == "causal2vec/ckpt" and meta.use_instructions and meta.similarity_fn_name == "cosine"
    assert meta.n_parameters == sum(p.numel() for p in tiny.parameters())
    loaded = meta.load_model()
    assert isinstance(loaded, Causal2VecMTEB)


MINILM = "sentence-transformers/all-MiniLM-L6-v2"


def test_untrained_checkpoint_lists_only_its_encoders_training_data(tiny, tmp_path):
    """As `python -m train init` writes it: a card with the base models, no training config."""
    from causal2vec.card import write_model_card

    folder = tmp_path / "init"
    tiny.save_pretrained(folder)
    write_model_card(folder, tiny.config, ["HuggingFaceTB/SmolLM2-135M-Instruct", MINILM])
    minilm = set(mteb.get_model_meta(MINILM).training_datasets)
    assert minilm and "SciFact" not in minilm
    assert Causal2VecMTEB(folder).mteb_model_meta.training_datasets == minilm
    assert training_files(folder) is None


def test_trained_checkpoint_lists_its_training_files(tmp_path, one_thread):
    """A `train fit` export on snli.jsonl + scifact.jsonl from random parts: SciFact only (snli has no mteb name)."""
    from train.__main__ import main

    data = make_train_data(tmp_path / "data")
    out = tmp_path / "run"
    args = ["fit", "--config", "tiny", "--output", str(out), "--set", f"data={data}", "--set", "steps=1"]
    assert main(args) == 0
    folder = out / "model"
    assert Causal2VecMTEB(folder).mteb_model_meta.training_datasets == {"SciFact"}  # random parts inherit nothing
    assert sorted(training_files(folder)) == ["scifact.jsonl", "snli.jsonl"]
    # without the card's table, the training config's data path says the same
    (folder / "README.md").unlink()
    assert sorted(training_files(folder)) == ["scifact.jsonl", "snli.jsonl"]
    assert training_datasets(folder) == {"SciFact"} | set(mteb.get_model_meta(MINILM).training_datasets)


def test_evaluation_mteb_command_on_the_local_tasks(tiny, tmp_path):
    """`python -m evaluation mteb` on the four local tasks: mteb's results folder (one file per task, the model's
    meta), scores equal to the project's own run of the same files where the protocols agree (STS, retrieval),
    and the card's model-index under MTEB's official names, as huggingface_hub reads it."""
    from huggingface_hub import ModelCard
    from mteb.cache import ResultCache

    from causal2vec.card import write_model_card
    from evaluation.__main__ import main

    folder, root, out = tmp_path / "ckpt", make_data(tmp_path / "data"), tmp_path / "mteb"
    tiny.save_pretrained(folder)
    write_model_card(folder, tiny.config, ["HuggingFaceTB/SmolLM2-135M-Instruct", MINILM])
    args = ["mteb", "--model", str(folder), "--tasks", "stsb", "scifact", "trec", "mr", "--data", str(root)]
    assert main([*args, "--output", str(out), "--card"]) == 0

    files = {p.name for p in (out / "results").rglob("*.json")}
    assert files >= {"STSBenchmark.json", "SciFact.json", "TREC.json", "MR.json", "model_meta.json"}
    results = ResultCache(out).load_results(models=["causal2vec/ckpt"])  # as mteb's tooling reads the folder
    loaded = {t.task_name: t for m in results.model_results for t in m.task_results}
    assert set(loaded) == {"STSBenchmark", "SciFact", "TREC", "MR"}
    assert loaded["STSBenchmark"].dataset_revision.startswith("local-")

    ours = evaluate(Embedder(tiny, show_progress_bar=False), ["stsb", "scifact"], root, None)
    sts = loaded["STSBenchmark"].scores["test"][0]["main_score"]
    assert sts == pytest.approx(ours["stsb"]["scores"]["test"][0]["cosine_spearman"], abs=1e-6)
    ndcg = loaded["SciFact"].scores["test"][0]["main_score"]
    assert ndcg == pytest.approx(ours["scifact"]["scores"]["test"][0]["ndcg_at_10"], abs=1e-4)

    card = ModelCard.load(folder / "README.md")
    index = {r.dataset_name: r for r in card.data.eval_results}
    assert index["STSBenchmark"].task_type == "STS" and index["SciFact"].task_type == "Retrieval"
    assert index["STSBenchmark"].dataset_type == "mteb/stsbenchmark-sts" and index["TREC"].dataset_type == "local/trec"
    assert index["SciFact"].metric_value == round(100 * ndcg, 2) and index["SciFact"].source_name == "MTEB"
    assert index["TREC"].source_name is None  # ours, not MTEB's

    # mteb would reuse a saved result by name: the local copy and mteb's task in one run, or other data, are refused
    with pytest.raises(ValueError, match="STSBenchmark asked twice"):
        main(["mteb", "--model", str(folder), "--tasks", "stsb", "STSBenchmark", "--output", str(out)])
    saved = next((out / "results").rglob("STSBenchmark.json"))
    saved.write_text(saved.read_text().replace(loaded["STSBenchmark"].dataset_revision, "the-hub-revision"))
    with pytest.raises(ValueError, match="holds STSBenchmark on dataset revision the-hub-revision"):
        main(["mteb", "--model", str(folder), "--tasks", "stsb", "--data", str(root), "--output", str(out)])


def test_a_test_label_missing_from_train_is_named_by_both_harnesses(tiny, tmp_path):
    """TREC's files read once for both harnesses (`data.read_train_test`): a test label the train file lacks is an
    error naming the files, in the project's run and in the local mteb task alike."""
    from eval_fixtures import write_tsv

    from evaluation.data import DataError
    from evaluation.tasks import local_task

    root = make_data(tmp_path / "data")
    write_tsv(root / "trec" / "test.tsv", ["text", "label"], [("What is a dog?", "UNSEEN"), ("How far is it?", "NUM")])
    with pytest.raises(DataError, match=r"test\.tsv: labels \['UNSEEN'\] never occur in .*train\.tsv"):
        local_task("TREC", root)
    with pytest.raises(DataError, match=r"test\.tsv: labels \['UNSEEN'\] never occur in .*train\.tsv"):
        evaluate(Embedder(tiny, show_progress_bar=False), ["trec"], root, None)


def test_local_and_hub_tasks_and_the_wrapper_settings(tiny, tmp_path):
    """A local copy is told from MTEB's own task (whose data mteb unloads after a run: no sample size read from it);
    the command's batch size reaches the embedder; dtype is part of the revision mteb files results under."""
    from evaluation.tasks import is_local, local_task

    root = make_data(tmp_path / "data")
    assert is_local(local_task("STSBenchmark", root)) and not is_local(mteb.get_task("STSBenchmark"))
    tiny.save_pretrained(tmp_path / "run" / "model")
    wrapper = Causal2VecMTEB(tmp_path / "run" / "model", batch_size=7)
    assert wrapper.embedder.batch_size == 7 and wrapper.mteb_model_meta.name == "causal2vec/run"
    bf16 = Causal2VecMTEB(tmp_path / "run" / "model", dtype="bf16")
    assert bf16.mteb_model_meta.revision != wrapper.mteb_model_meta.revision
