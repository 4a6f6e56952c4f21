"""Metrics: cosine Spearman (STS), nDCG/MAP/Recall (retrieval, via pytrec_eval), logistic-regression accuracy."""

from __future__ import annotations

import warnings

import numpy as np
from scipy.stats import pearsonr, spearmanr


def normalize(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero)."""
    x = np.asarray(x, dtype=np.float32)
    return x / np.clip(np.linalg.norm(x, axis=1, keepdims=True), 1e-12, None)


def sts_scores(emb1: np.ndarray, emb2: np.ndarray, gold: list[float]) -> dict[str, float]:
    """Spearman and Pearson of pairwise cosine similarity against the gold scores (MTEB's `cosine_*`)."""
    cos = (normalize(emb1) * normalize(emb2)).sum(1)
    return {
        "cosine_spearman": float(spearmanr(cos, gold).statistic),
        "cosine_pearson": float(pearsonr(cos, gold).statistic),
    }


def top_k(query_emb: np.ndarray, doc_emb: np.ndarray, k: int, chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Indices and cosine scores of the k most similar documents per query, best first."""
    q, d = normalize(query_emb), normalize(doc_emb)
    k = min(k, len(d))
    idx, val = [], []
    for start in range(0, len(q), chunk):
        sims = q[start : start + chunk] @ d.T
        part = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        part_sims = np.take_along_axis(sims, part, axis=1)
        order = np.argsort(-part_sims, axis=1, kind="stable")
        idx.append(np.take_along_axis(part, order, axis=1))
        val.append(np.take_along_axis(part_sims, order, axis=1))
    return np.concatenate(idx), np.concatenate(val)


def retrieval_scores(
    qrels: dict[str, dict[str, int]], run: dict[str, dict[str, float]], ks: tuple[int, ...] = (1, 10, 100)
) -> dict[str, float]:
    """nDCG@k, MAP@k, Recall@k averaged over the judged queries (pytrec_eval, as BEIR and MTEB compute them).

    A judged query missing from `run` counts as 0.
    """
    import pytrec_eval

    k_str = ",".join(map(str, ks))
    measures = {f"ndcg_cut.{k_str}", f"map_cut.{k_str}", f"recall.{k_str}"}
    per_query = pytrec_eval.RelevanceEvaluator(qrels, measures).evaluate(run)
    n = len(qrels)
    out = {}
    for k in ks:
        for name, key in (("ndcg_at", "ndcg_cut"), ("map_at", "map_cut"), ("recall_at", "recall")):
            out[f"{name}_{k}"] = float(sum(m[f"{key}_{k}"] for m in per_query.values()) / n)
    return out


def classification_accuracy(
    train_x: np.ndarray, train_y: list[str], test_x: np.ndarray, test_y: list[str], seed: int = 42, max_iter: int = 100
) -> dict[str, float]:
    """Accuracy and macro F1 of a logistic regression (MTEB's classifier) fitted on the frozen embeddings scaled to
    unit length, and `accuracy_raw`, the same classifier on the embeddings as they are (MTEB's protocol).

    Unit length, like the cosine of every other task: on raw last hidden states, whose norms run ~30 for a decoder,
    lbfgs stops unconverged at max_iter 100 and the score follows the output's scale more than its content."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, f1_score

    def fit_predict(x_train: np.ndarray, x_test: np.ndarray) -> np.ndarray:
        clf = LogisticRegression(random_state=seed, max_iter=max_iter)
        with warnings.catch_warnings():  # unconverged raw fits are expected (see above); the score records it
            warnings.simplefilter("ignore", ConvergenceWarning)
            clf.fit(x_train, train_y)
        return clf.predict(x_test)

    pred = fit_predict(normalize(train_x), normalize(test_x))
    raw = fit_predict(np.asarray(train_x), np.asarray(test_x))
    return {
        "accuracy": float(accuracy_score(test_y, pred)),
        "f1": float(f1_score(test_y, pred, average="macro")),
        "accuracy_raw": float(accuracy_score(test_y, raw)),
    }
