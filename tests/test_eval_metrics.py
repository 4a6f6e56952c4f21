"""Metrics against hand-computed values, and clear errors on bad data files."""

from __future__ import annotations

import math

import numpy as np
import pytest
from eval_fixtures import make_data, write_tsv

from evaluation import data, metrics


def test_sts_spearman_hand_computed():
    # cosines 1, 0, 0.6, -1 against gold 5, 1, 3, 2: ranks (4,2,3,1) vs (4,1,3,2), sum d^2 = 2
    a = np.array([[1, 0], [1, 0], [1, 0], [1, 0]], dtype=np.float32)
    b = np.array([[2, 0], [0, 3], [0.6, 0.8], [-1, 0]], dtype=np.float32)
    scores = metrics.sts_scores(a, b, [5, 1, 3, 2])
    assert scores["cosine_spearman"] == pytest.approx(1 - 6 * 2 / (4 * (16 - 1)))  # 0.8


def test_retrieval_metrics_hand_computed():
    qrels = {"q1": {"d1": 1, "d2": 1}, "q2": {"d4": 1}, "q3": {"d5": 1}}
    run = {
        "q1": {"d3": 0.9, "d1": 0.8, "d4": 0.7, "d2": 0.6},  # relevant at ranks 2 and 4
        "q2": {"d4": 0.9, "d1": 0.1},  # relevant at rank 1
    }  # q3 retrieved nothing: it counts as 0
    s = metrics.retrieval_scores(qrels, run)
    ndcg_q1 = (1 / math.log2(3) + 1 / math.log2(5)) / (1 + 1 / math.log2(3))
    assert s["ndcg_at_10"] == pytest.approx((ndcg_q1 + 1 + 0) / 3, abs=1e-4)
    assert s["map_at_100"] == pytest.approx(((1 / 2 + 2 / 4) / 2 + 1 + 0) / 3, abs=1e-4)
    assert s["recall_at_100"] == pytest.approx(2 / 3, abs=1e-4)
    assert s["recall_at_1"] == pytest.approx(1 / 3, abs=1e-4)
    assert s["ndcg_at_1"] == pytest.approx(1 / 3, abs=1e-4)


def test_top_k_orders_by_cosine():
    docs = np.array([[1, 0], [0, 1], [1, 1], [-1, 0]], dtype=np.float32)
    idx, val = metrics.top_k(np.array([[1, 0.1]], dtype=np.float32), docs, k=3, chunk=1)
    assert idx.tolist() == [[0, 2, 1]]
    assert val[0, 0] == pytest.approx(1 / math.sqrt(1.01))


def test_classification_accuracy_hand_computed():
    train_x = np.array([[-2.0], [-1.0], [1.0], [2.0]])
    test_x = np.array([[-3.0], [-0.5], [0.5], [3.0]])
    # the classifier splits at 0; the last test label is deliberately wrong: 3 of 4 correct
    s = metrics.classification_accuracy(train_x, ["a", "a", "b", "b"], test_x, ["a", "a", "b", "a"])
    assert s["accuracy"] == pytest.approx(0.75)


def test_readers_on_fixtures(tmp_path):
    root = make_data(tmp_path)
    sts = data.read_sts(root / "stsb" / "test.tsv")
    assert len(sts.scores) == 6 and sts.scores[0] == 4.8
    beir = data.read_beir(root / "scifact")
    assert set(beir.queries) == {"q1", "q2", "q3"}  # the unjudged query is dropped
    assert beir.corpus["d1"].startswith("Guitars The guitar")
    assert data.read_classification(root / "mr" / "data.tsv").labels.count("NUM") == 10


def test_quotes_are_kept(tmp_path):
    path = write_tsv(
        tmp_path / "q.tsv", ["sentence1", "sentence2", "score"], [('He said "hi', 'x"', 1.0), ("a", "b", 2)]
    )
    assert data.read_sts(path).sentences1[0] == 'He said "hi'


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("sentence1\tsentence2\tscore\na\tb\t1\nc\td\n", "bad.tsv:3: expected 3 tab-separated fields"),
        ("sentence1\tsentence2\tscore\na\tb\tfive\n", "bad.tsv:2: score 'five' is not a number"),
        ("s1\ts2\tscore\na\tb\t1\n", "bad.tsv:1: header"),
        ("", "bad.tsv: empty file"),
    ],
)
def test_bad_sts_file(tmp_path, content, message):
    path = tmp_path / "bad.tsv"
    path.write_text(content)
    with pytest.raises(data.DataError, match=message):
        data.read_sts(path)


def test_bad_classification_and_beir(tmp_path):
    path = tmp_path / "c.tsv"
    path.write_text("text\tlabel\nhello\tpos\nbye\t neg\n")
    with pytest.raises(data.DataError, match="c.tsv:3: label ' neg'"):
        data.read_classification(path)
    with pytest.raises(data.DataError, match="missing.tsv: file not found"):
        data.read_sts(tmp_path / "missing.tsv")
    root = make_data(tmp_path / "d")
    (root / "scifact" / "queries.jsonl").write_text('{"_id": "q1", "text": "ok"}\n{"_id": "q2", "text": \n')
    with pytest.raises(data.DataError, match="queries.jsonl:2: invalid JSON"):
        data.read_beir(root / "scifact")
    (root / "scifact" / "queries.jsonl").write_text('{"_id": "q1", "text": "ok"}\n')
    with pytest.raises(data.DataError, match=r"test.tsv:3: query id 'q2' is not in queries.jsonl"):
        data.read_beir(root / "scifact")


def test_cross_validation_hand_computed():
    """Stratified 10-fold on 20 one-dimensional points: every fold holds one "a" and one "b" test point."""
    from evaluation.tasks import cross_validate

    rng = np.random.default_rng(0)
    x = np.concatenate([-2 + 0.1 * rng.standard_normal(10), 2 + 0.1 * rng.standard_normal(10)])[:, None]
    labels = ["a"] * 10 + ["b"] * 10
    assert cross_validate(x, labels, folds=10)["accuracy"] == 1.0  # separable: every fold right
    # one "b" sits among the "a"s: its fold gets 1 of 2 right, the 9 others 2 of 2 -> (9 * 1 + 0.5) / 10
    x[19] = -2.0
    s = cross_validate(x, labels, folds=10)
    assert s["accuracy"] == pytest.approx(0.95) and s["folds"] == 10
    # rows and labels travel together: the same data in another order scores the same
    order = rng.permutation(20)
    x_perm, labels_perm = x[order], [labels[i] for i in order]
    assert cross_validate(x_perm, labels_perm, folds=10, seed=3)["accuracy"] == pytest.approx(0.95)
    # and labels that no longer belong to their rows score near chance, not 0.95
    shuffled = [labels[i] for i in rng.permutation(20)]
    assert cross_validate(x, shuffled, folds=10)["accuracy"] < 0.8
    with pytest.raises(ValueError, match="20 embeddings for 19 labels"):
        cross_validate(x, labels[:19])


def test_run_classification_matches_direct_cross_validation(tiny, tmp_path):
    """The k-fold path end to end with a real tiny model equals cross-validating its embeddings by hand."""
    from evaluation.embedder import Embedder
    from evaluation.tasks import cross_validate, run_classification

    root = make_data(tmp_path)
    rows = data.read_classification(root / "mr" / "data.tsv")
    result = run_classification(Embedder(tiny, show_progress_bar=False), {"data": root / "mr" / "data.tsv"}, "Classify")
    emb = tiny.encode(rows.texts, prompt=tiny.config.query_prompt("Classify"))
    expected = cross_validate(emb, rows.labels, folds=10)
    assert result["accuracy"] == pytest.approx(expected["accuracy"]) and result["f1"] == pytest.approx(expected["f1"])


def test_classification_sees_directions_only():
    """Each embedding's length is ignored (unit length, as cosine), while `accuracy_raw` fits the raw vectors."""
    rng = np.random.default_rng(0)
    labels = ["a", "b"] * 40
    x = rng.normal(size=(80, 16)) + np.array([[3.0] + [0.0] * 15 if y == "a" else [-3.0] + [0.0] * 15 for y in labels])
    scaled = x * rng.uniform(0.01, 100.0, size=(80, 1))
    plain = metrics.classification_accuracy(x[:60], labels[:60], x[60:], labels[60:])
    rescaled = metrics.classification_accuracy(scaled[:60], labels[:60], scaled[60:], labels[60:])
    assert plain["accuracy"] == rescaled["accuracy"] and plain["f1"] == rescaled["f1"]
    assert set(plain) == {"accuracy", "f1", "accuracy_raw"} and 0.5 < plain["accuracy_raw"] <= 1.0
