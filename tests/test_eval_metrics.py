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
    """The benchmarks' own rankings are scored by mteb's retrieval metrics (`benchmarks.vectors.RetrievalSet`)."""
    from benchmarks.vectors import RetrievalSet, top_k

    qrels = {"q1": {"d1": 1, "d2": 1}, "q2": {"d4": 1}}
    docs = ["d1", "d2", "d3", "d4"]
    sample = RetrievalSet(["q1", "q2"], docs, qrels, np.zeros((2, 2)), np.zeros((4, 2)))
    idx = np.array([[2, 0, 3, 1], [3, 0, 1, 2]])  # q1: relevant at ranks 2 and 4; q2: at rank 1
    s = sample.scores(idx, np.tile([0.9, 0.8, 0.7, 0.6], (2, 1)))
    ndcg_q1 = (1 / math.log2(3) + 1 / math.log2(5)) / (1 + 1 / math.log2(3))
    assert s["ndcg_at_10"] == pytest.approx((ndcg_q1 + 1) / 2, abs=1e-5)
    assert s["recall_at_10"] == 1.0 and (s["num_queries"], s["num_documents"]) == (2, 4)
    docs_emb = np.array([[1, 0], [0, 1], [1, 1], [-1, 0]], dtype=np.float32)
    idx, val = top_k(np.array([[1, 0.1]], dtype=np.float32), docs_emb, k=3)
    assert idx.tolist() == [[0, 2, 1]] and val[0, 0] == pytest.approx(1 / math.sqrt(1.01))


def test_classifier_hand_computed():
    from evaluation.tasks import classifier

    train_x = np.array([[-2.0], [-1.0], [1.0], [2.0]])
    test_x = np.array([[-3.0], [-0.5], [0.5], [3.0]])
    # the classifier splits at 0; the last test label is deliberately wrong: 3 of 4 correct
    assert classifier().fit(train_x, ["a", "a", "b", "b"]).score(test_x, ["a", "a", "b", "a"]) == pytest.approx(0.75)


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
    with pytest.raises(data.DataError, match="queries.jsonl:2: not valid JSON"):
        data.read_beir(root / "scifact")
    # the first bad line is named, whatever is wrong further down
    (root / "scifact" / "queries.jsonl").write_text('{"_id": "q1"}\n{"_id": "q2", "text": \n')
    with pytest.raises(data.DataError, match=r"queries.jsonl:1: expected an object with string fields"):
        data.read_beir(root / "scifact")
    (root / "scifact" / "queries.jsonl").write_text('{"_id": "q1", "text": "ok"}\n')
    with pytest.raises(data.DataError, match=r"test.tsv:3: query id 'q2' is not in queries.jsonl"):
        data.read_beir(root / "scifact")


def test_mr_cross_validation_matches_sklearn(tiny, tmp_path):
    """The battery's MR through mteb (its cross-validation, the task's seed, the battery's classifier) equals
    10-fold cross-validation of the same embeddings by hand with scikit-learn."""
    from sklearn.model_selection import KFold

    from evaluation.embedder import Embedder
    from evaluation.run import evaluate
    from evaluation.tasks import classifier

    root = make_data(tmp_path)
    rows = data.read_classification(root / "mr" / "data.tsv")
    result = evaluate(Embedder(tiny, show_progress_bar=False), ["mr"], root, None, instructions={"mr": "Classify"})
    emb, y = tiny.encode(rows.texts, prompt=tiny.config.query_prompt("Classify")), np.array(rows.labels)
    folds = KFold(10, shuffle=True, random_state=0).split(emb)
    expected = np.mean([classifier().fit(emb[tr], y[tr]).score(emb[te], y[te]) for tr, te in folds])
    assert result["mr"]["score"] == pytest.approx(expected, abs=1e-9)
    assert len(result["mr"]["scores"]["test"][0]["scores_per_experiment"]) == 10


def test_classification_sees_directions_only():
    """Each embedding's length is ignored (unit length, as cosine): the battery's probe on rescaled rows."""
    from evaluation.tasks import classifier

    rng = np.random.default_rng(0)
    labels = ["a", "b"] * 40
    x = rng.normal(size=(80, 16)) + np.array([[3.0] + [0.0] * 15 if y == "a" else [-3.0] + [0.0] * 15 for y in labels])
    scaled = x * rng.uniform(0.01, 100.0, size=(80, 1))
    plain = classifier().fit(x[:60], labels[:60]).predict(x[60:])
    rescaled = classifier().fit(scaled[:60], labels[:60]).predict(scaled[60:])
    assert (plain == rescaled).all() and 0.5 < np.mean(plain == np.array(labels[60:])) <= 1.0


def test_trec_matches_sklearn(tiny, tmp_path):
    """The battery's TREC through mteb equals the battery's probe fitted by hand on every training question; a
    task without an instruction gets none (not mteb's default prompt)."""
    from evaluation.embedder import Embedder
    from evaluation.run import evaluate
    from evaluation.tasks import classifier

    root = make_data(tmp_path)
    train, test = data.read_train_test(root / "trec" / "train.tsv", root / "trec" / "test.tsv")
    result = evaluate(Embedder(tiny, show_progress_bar=False), ["trec"], root, None, instructions={})["trec"]
    assert result["instruction"] is None and result["prompt"] == ""
    fitted = classifier().fit(tiny.encode(train.texts), train.labels)
    assert result["score"] == pytest.approx(fitted.score(tiny.encode(test.texts), test.labels), abs=1e-9)
