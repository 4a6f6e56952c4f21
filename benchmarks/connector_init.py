"""What a freshly initialised connector keeps of its encoder: STS Spearman and TREC accuracy (x100, logistic
regression on unit-length vectors, as in the dev battery) of the pooled encoder vector alone, through the
checkpoint's own connector, and through new connectors drawn with each `connector_init`, several draws each.

    python -m benchmarks.connector_init --model runs/default-init --draws 3

The connector's RMSNorm gain does not change a cosine or a unit-length vector, so it is left out. STS-B dev and
TREC (2,000 training questions, all 500 test questions) by default: settings are chosen on them.
"""

from __future__ import annotations

import argparse
import copy
import json
from collections.abc import Callable
from pathlib import Path

import torch

from evaluation.data import DEFAULT_DATA, read_classification, read_sts
from evaluation.metrics import sts_scores
from evaluation.tasks import DEV_BATTERY, classifier, sample_indices


def pooled(model, texts: list[str], batch_size: int = 64) -> torch.Tensor:
    """The encoder's pooled vectors (`encoder_pooling`), what the connector reads."""
    out = []
    with torch.no_grad():
        for i in range(0, len(texts), batch_size):
            batch = model.tokenizer(texts[i : i + batch_size], return_tensors="pt")
            out.append(model.encoder_pooled(batch["encoder_input_ids"], batch["encoder_attention_mask"]))
    return torch.cat(out).float()


def fresh_connector(model, init: str, seed: int) -> torch.nn.Module:
    """A new connector like the checkpoint's, each layer initialised as the model would with `init`."""
    from modeling_causal2vec import init_connector_layer

    torch.manual_seed(seed)
    connector = type(model.connector)(model.config)
    config = copy.copy(model.config)
    config.connector_init = init
    for i, layer in enumerate(connector.layers):
        init_connector_layer(layer, config, first=i == 0)
    return connector


def score(
    transform: Callable[[torch.Tensor], torch.Tensor], data: dict[str, torch.Tensor], labels: tuple
) -> dict[str, float]:
    with torch.no_grad():
        x = {k: transform(v).float().numpy() for k, v in data.items()}
    sts = sts_scores(x["a"], x["b"], labels[0])["cosine_spearman"]
    trec = classifier().fit(x["train"], labels[1]).score(x["test"], labels[2])  # the battery's probe
    return {"sts": 100 * sts, "trec": 100 * trec}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="Causal2Vec folder (its encoder, tokenizer and connector)")
    parser.add_argument("--sts", type=Path, default=DEFAULT_DATA / "stsb" / "dev.tsv", help="STS TSV")
    parser.add_argument("--trec", type=Path, default=DEFAULT_DATA / "trec", help="folder with train.tsv and test.tsv")
    parser.add_argument("--draws", type=int, default=3, help="seeds per connector_init")
    parser.add_argument("--limit", type=int, default=DEV_BATTERY["trec"][0], help="training questions (0: all)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)

    from transformers import AutoModel

    from configuration_causal2vec import CONNECTOR_INITS

    torch.set_num_threads(args.threads)
    model = AutoModel.from_pretrained(args.model, trust_remote_code=True).eval()
    sts = read_sts(args.sts)
    train, test = read_classification(args.trec / "train.tsv"), read_classification(args.trec / "test.tsv")
    keep = sample_indices(len(train.texts), args.limit or None, 0)
    texts = {
        "a": sts.sentences1,
        "b": sts.sentences2,
        "train": [train.texts[i] for i in keep],
        "test": test.texts,
    }
    data = {k: pooled(model, v) for k, v in texts.items()}
    labels = (sts.scores, [train.labels[i] for i in keep], test.labels)
    rows = {
        "encoder alone": score(lambda x: x, data, labels),
        "checkpoint's connector": score(model.connector, data, labels),
    }
    for init in CONNECTOR_INITS:
        for seed in range(args.draws):
            rows[f"{init} #{seed}"] = score(fresh_connector(model, init, seed), data, labels)
    for name, r in rows.items():
        print(f"{name}: sts {r['sts']:.2f}  trec {r['trec']:.2f}", flush=True)
    print(json.dumps({"model": args.model, "results": rows}))
    return rows


if __name__ == "__main__":
    main()
