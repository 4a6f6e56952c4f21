"""The files around the weights that make a Causal2Vec folder a Hub model repo: the model card (`README.md`) and the
sentence-transformers files. This module is their one writer: `save_pretrained`, `python -m train` and
`python -m evaluation run --card` all write through it.

The card's facts are data: its YAML front matter holds the Hub metadata (library, pipeline tag, license, base
models, tags, widget, `model-index`) and, under `causal2vec`, what other code reads back (base models, training
settings, training files with their row counts, evaluation rows); the markdown body is rendered from that data.
Read it with `huggingface_hub.ModelCard.load(path).data`, never by parsing the prose.

Standard library only, on purpose: this file ships inside every checkpoint as remote code, which may import only
torch, transformers and its sibling files, so it cannot use `huggingface_hub.ModelCard` or PyYAML. The front matter
is written as YAML whose values are JSON (flow style, valid YAML), which `ModelCard.load` parses.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# the oldest sentence-transformers that loads, encodes and trains an export (checked: 5.4.0, 5.6.0, 5.7.0, 6.0.0,
# 6.2.0; 5.3.0 lacks the `sentence_transformers.base` modules that modules.json names)
MIN_SENTENCE_TRANSFORMERS = "5.4.0"
CARD_FILE = "README.md"
METADATA_KEY = "causal2vec"  # front-matter field with the data other code reads back
LANGUAGES = ["en"]
TAGS = ["causal2vec", "sentence-transformers", "feature-extraction", "text-embeddings", "custom_code"]
WIDGET = [
    {"text": "The Contextual token lets every causal token see the whole text."},
    {"text": "A decoder-only LLM turned into a text embedding model."},
]
# Hub licence ids of decoder families whose weights carry their own terms (by `model_type`, so a folder path counts
# too); any other decoder's card says apache-2.0, SmolLM2's and all-MiniLM-L6-v2's licence
DECODER_LICENSES = {"gemma": "gemma", "gemma2": "gemma", "gemma3": "gemma", "gemma3_text": "gemma"}
# What such terms ask of every copy of the weights: the notice to carry in a NOTICE text file (Gemma Terms of Use,
# section 3.1), and what the card says before repeating it
LICENSE_TERMS = {
    "gemma": {
        "notice": "Gemma is provided under and subject to the Gemma Terms of Use found at ai.google.dev/gemma/terms",
        "card": "The decoder's weights are a Model Derivative of Gemma, modified (de-quantized from a GGUF file, and"
        " fine-tuned if this model was trained), and distributed under the Gemma Terms of Use"
        " (https://ai.google.dev/gemma/terms), with the restrictions of the Gemma Prohibited Use Policy"
        " (https://ai.google.dev/gemma/prohibited_use_policy); pass a copy of those terms on with the weights.",
    }
}
NOTICE_FILE = "NOTICE"
FRONT_ORDER = ("library_name", "pipeline_tag", "license", "base_model", "tags", "widget", "language")
EVAL_HEADING = "## Evaluation"
EVAL_NOTE = (
    "Scores x100 from `python -m evaluation run` on local data (STS-B: Spearman; SciFact: nDCG@10; TREC, MR: accuracy)."
)
EVAL_COLUMNS = ["task", "split", "metric", "score", "n", "how"]
_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")
_PLAIN = re.compile(r"^[A-Za-z_][\w .,/()-]*[\w.)]$")  # strings safe as plain YAML scalars
_YAML_WORDS = {"true", "false", "yes", "no", "on", "off", "null", "y", "n"}


def write_sentence_transformers_files(
    folder: str | os.PathLike, config: Any, prompts: dict[str, str] | None = None
) -> None:
    """Files that let `SentenceTransformer(folder, trust_remote_code=True)` load this model. `prompts` (name ->
    decoder prompt, e.g. per evaluation task) are added to the `query` and `document` prompts."""
    files = {
        "modules.json": [
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.base.modules.transformer.Transformer"}
        ],
        "sentence_bert_config.json": {
            "transformer_task": "feature-extraction",
            "modality_config": {"text": {"method": "forward", "method_output_name": "sentence_embedding"}},
            "processing_kwargs": {"text": {"short_encoder_keys": True}},  # see SHORT_ENCODER_KEYS
            "module_output_name": "sentence_embedding",
        },
        "config_sentence_transformers.json": {
            "model_type": "SentenceTransformer",
            "prompts": {"query": config.query_prompt(), "document": config.document_prompt, **(prompts or {})},
            "default_prompt_name": None,
            "similarity_fn_name": "cosine",
            "requirements": {"sentence_transformers": f">={MIN_SENTENCE_TRANSFORMERS}"},
        },
    }
    for name, content in files.items():
        (Path(folder) / name).write_text(json.dumps(content, indent=2) + "\n")


def card_metadata(
    base_models: Sequence[str] = (),
    training: dict[str, Any] | None = None,
    data_files: dict[str, int | str] | None = None,
    evaluation: Sequence[dict[str, Any]] = (),
    loss_curve: str | None = None,
) -> dict[str, Any]:
    """The `causal2vec` front-matter field: what the card's body is rendered from and what other code reads."""
    return {
        "base_models": list(base_models),
        "training": training or None,
        "data_files": data_files or None,
        "evaluation": list(evaluation),
        "loss_curve": loss_curve,
    }


def write_card(
    folder: str | os.PathLike,
    config: Any,
    metadata: dict[str, Any] | None = None,
    hub_metadata: dict[str, Any] | None = None,
) -> Path:
    """Write `folder/README.md` for `config` from `metadata` (`card_metadata(...)`); `hub_metadata` adds Hub
    front-matter fields (e.g. `model-index`, `model_name`)."""
    meta = {**card_metadata(), **(metadata or {})}
    hub_bases = [b for b in meta["base_models"] if _HUB_ID.match(b) and not os.path.exists(b)]
    licence = card_license(config)
    front: dict[str, Any] = {
        "library_name": "transformers",
        "pipeline_tag": "feature-extraction",
        "license": licence,
        **({"base_model": hub_bases} if hub_bases else {}),
        "tags": TAGS,
        "widget": WIDGET,
        "language": LANGUAGES,
        **(hub_metadata or {}),
        METADATA_KEY: meta,
    }
    path = Path(folder) / CARD_FILE
    path.write_text(front_matter(front) + card_body(config, meta), encoding="utf-8")
    if licence in LICENSE_TERMS:
        write_notice(Path(folder) / NOTICE_FILE, LICENSE_TERMS[licence]["notice"])
    return path


def card_license(config: Any) -> str:
    """The card's `license`: the decoder family's own terms where it has them, else apache-2.0."""
    return DECODER_LICENSES.get(config.decoder.model_type, "apache-2.0")


def write_notice(path: Path, notice: str) -> None:
    """Put `notice` in the NOTICE file, after whatever is there already (a NOTICE of the user's own is kept)."""
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    if notice not in text:
        path.write_text(text + ("\n" if text and not text.endswith("\n") else "") + notice + "\n", encoding="utf-8")


def card_body(config: Any, meta: dict[str, Any]) -> str:
    """The card's markdown: what the model is, usage, serving, upload, then training and evaluation from `meta`."""
    body = _about(config, meta["base_models"])
    if meta["data_files"]:
        body += "\n## Training data\n\n| file | rows |\n| --- | --- |\n"
        body += "\n".join(f"| {name} | {rows} |" for name, rows in meta["data_files"].items()) + "\n"
    training = meta["training"]
    if training and training.get("baseline"):
        name = training["baseline"]
        body += (
            f"\n> **Trained as the `{name}` baseline**, not as Causal2Vec: these weights hold the fine-tuned parts, and"
            f" `AutoModel` loads them as Causal2Vec. Embed the way they were trained with"
            f' `causal2vec.baselines.build_baseline("{name}", model)`, or evaluate with'
            f" `python -m evaluation run --model PATH --baseline {name}`.\n"
        )
    if training:
        body += "\n## Training\n\n" + _table(training) + "\n"
    body += "\n" + evaluation_section(meta["evaluation"])
    if meta["loss_curve"]:
        body += f"\n![training loss]({meta['loss_curve']})\n"
    if terms := LICENSE_TERMS.get(card_license(config)):
        body += f"\n## Licence\n\n{terms['card']} {terms['notice']}. It is also in the `{NOTICE_FILE}` file.\n"
    return body


def evaluation_section(rows: Sequence[dict[str, Any]]) -> str:
    """The Evaluation section: one row per task (task, split, metric, score x100, n, how)."""
    if not rows:
        return f"{EVAL_HEADING}\n\nNo evaluation results are recorded for this checkpoint.\n"
    lines = ["| " + " | ".join(EVAL_COLUMNS) + " |", "|" + " --- |" * len(EVAL_COLUMNS)]
    for r in rows:
        n = "-" if r.get("n") is None else str(r["n"])
        cells = [r["task"], r["split"], r["metric"], f"{100 * r['score']:.2f}", n, r["how"]]
        lines.append("| " + " | ".join(cells) + " |")
    return f"{EVAL_HEADING}\n\n{EVAL_NOTE}\n\n" + "\n".join(lines) + "\n"


def front_matter(fields: dict[str, Any]) -> str:
    """`---` YAML `---`: the Hub fields first in `FRONT_ORDER`, the rest after; top-level lists in block style,
    everything nested as JSON (a subset of YAML)."""
    lines = ["---"]
    for key, value in ({k: fields[k] for k in FRONT_ORDER if k in fields} | fields).items():
        if isinstance(value, list) and value:
            lines.append(f"{key}:")
            for item in value:
                if isinstance(item, dict) and item:
                    pairs = [f"{k}: {_scalar(v)}" for k, v in item.items()]
                    lines += ["- " + pairs[0]] + ["  " + p for p in pairs[1:]]
                else:
                    lines.append(f"- {_scalar(item)}")
        else:
            lines.append(f"{key}: {_scalar(value)}")
    return "\n".join(lines + ["---", ""])


def _scalar(value: Any) -> str:
    """`value` as one line of YAML: a string plain where unambiguous, anything else as `_flow` writes it."""
    if isinstance(value, str) and _PLAIN.match(value) and value.lower() not in _YAML_WORDS:
        return value
    return _flow(value)


def _flow(value: Any) -> str:
    """`value` as JSON, which is YAML, except that floats are written so that YAML 1.1 reads them back as floats."""
    if isinstance(value, float):
        if not math.isfinite(value):
            return ".nan" if math.isnan(value) else (".inf" if value > 0 else "-.inf")
        text = repr(value)
        return text.replace("e", ".0e") if "e" in text and "." not in text else text  # YAML 1.1 needs "1.0e-05"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(str(k))}: {_flow(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_flow(v) for v in value) + "]"
    if isinstance(value, str | bool | int) or value is None:
        return json.dumps(value)
    return json.dumps(str(value))


def _table(rows: dict[str, Any]) -> str:
    lines = ["| key | value |", "| --- | --- |"]
    lines += [f"| {k} | {json.dumps(v) if isinstance(v, (dict, list)) else v} |" for k, v in rows.items()]
    return "\n".join(lines)


def _truncation_note(config: Any) -> str:
    """The card's line on shorter vectors: `truncate_dim`, and what the first half holds for `contextual_eos`."""
    note = (
        "Shorter vectors: `truncate_dim=k` (in `model.encode` and in `SentenceTransformer(..., truncate_dim=k)`) "
        "keeps the first k dimensions (`normalize_embeddings` normalises the shortened vector)"
    )
    if config.pooling != "contextual_eos":
        return note + "."
    half = config.embedding_dim // 2
    return note + f"; the first {half} are the Contextual token's state, the last {half} EOS's."


def _limitations(config: Any) -> str:
    """The card's Limitations section: what loading needs, where scores come from, and (C and EOS halves) how to
    quantize."""
    lines = [
        "## Limitations",
        "",
        "- Loading runs this repo's code (`trust_remote_code=True`); the Hub widget and text-embeddings-inference do "
        "not run it.",
        "- Scores: only those the Evaluation section lists, each with how it was made; the Causal2Vec project's "
        "`python -m evaluation mteb --card` adds MTEB's (`model-index`).",
    ]
    if config.pooling == "contextual_eos":
        half = config.embedding_dim // 2
        lines.append(
            f"- int8 / binary vectors: quantize the first {half} dimensions (the Contextual token's), not all "
            f"{config.embedding_dim}: the EOS half's dimensions spread far less, and on one seed of three of the "
            "project's default recipe the whole vector lost nearly all its retrieval quality under int8 and binary."
        )
    return "\n".join(lines)


def _about(config: Any, base_models: Sequence[str]) -> str:
    dim = config.embedding_dim
    return f"""# Causal2Vec embedding model

A [Causal2Vec](https://arxiv.org/abs/2507.23386) text-embedding model: a BERT-style encoder
(`{config.encoder.model_type}`) summarises the text into one *Contextual token*, which is placed in front of the
text in a causal decoder (`{config.decoder.model_type}`); the embedding ({dim} dimensions, pooling
`{config.pooling}`) concatenates the decoder's last hidden states of the Contextual token and EOS.

Base models: {", ".join(base_models) or "see config.json"}.

## Usage

```python
from transformers import AutoModel
model = AutoModel.from_pretrained("PATH_OR_REPO", trust_remote_code=True)
docs = model.encode(["first document", "second document"], normalize_embeddings=True)
queries = model.encode(["a question"], prompt_name="query", normalize_embeddings=True)
```

```python
from sentence_transformers import SentenceTransformer  # sentence-transformers >= {MIN_SENTENCE_TRANSFORMERS}
model = SentenceTransformer("PATH_OR_REPO", trust_remote_code=True)
emb = model.encode(["first document"], prompt_name="query")
```

{_truncation_note(config)}

Fine-tune it with sentence-transformers' `SentenceTransformerTrainer` (e.g. `MultipleNegativesRankingLoss`) like any
other sentence-transformers model.

```python
from transformers import pipeline
extract = pipeline("feature-extraction", model="PATH_OR_REPO", trust_remote_code=True)
vector = extract("some text")[0]
```

Queries carry an instruction: `model.config.query_prompt("Given a claim, retrieve evidence")` gives the prompt
`{config.prompt_template.format("...")!r}`; the instruction reaches the decoder only.

## Serving, and the Hub widget

The Hub's hosted inference does not run `trust_remote_code` models, so the widget on this page has no backend and
shows no result; text-embeddings-inference does not run custom code either. The backend is an
**Inference Endpoint** deployed from this repo: it runs the repo's `handler.py` (`EndpointHandler`), which answers
`{{"inputs": ["text", ...], "parameters": {{"prompt_name": "query"}}}}` with one embedding per text, equal to
`model.encode`. The endpoint's widget sends one text and shows its vector; it cannot pass `parameters` (prompts) or
compare sentences: use the endpoint's HTTP API for those.
For the OpenAI embeddings API (the `openai` client, LangChain, LlamaIndex, vector databases), serve the folder with
the Causal2Vec project's `python -m serve --model PATH --port 8000`.

{_limitations(config)}

## Upload

```bash
hf upload USER/NAME PATH_TO_THIS_FOLDER .   # huggingface-cli upload USER/NAME PATH . with older hub clients
```
"""
