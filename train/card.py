"""The model card (`README.md` with Hub metadata) written into every exported checkpoint."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


def _table(rows: dict[str, Any]) -> str:
    lines = ["| key | value |", "| --- | --- |"]
    lines += [f"| {k} | {json.dumps(v) if isinstance(v, (dict, list)) else v} |" for k, v in rows.items()]
    return "\n".join(lines)


def write_model_card(
    folder: Path,
    config: Any,
    base_models: list[str],
    training: dict[str, Any] | None = None,
    evaluation: dict[str, Any] | None = None,
    data_files: dict[str, int] | None = None,
) -> Path:
    """Write `folder/README.md`: Hub front matter, usage, and what is known of training (and of evaluation, if
    given; `train fit` gives none: `python -m evaluation run --card` adds results later, via `update_evaluation`)."""
    hub_bases = [b for b in base_models if HUB_ID.match(b)]
    front = ["---", "library_name: transformers", "pipeline_tag: feature-extraction", "license: apache-2.0"]
    if hub_bases:
        front += ["base_model:"] + [f"- {b}" for b in hub_bases]
    front += [
        "tags:",
        "- causal2vec",
        "- sentence-transformers",
        "- feature-extraction",
        "- text-embeddings",
        "- custom_code",
        "widget:",
        "- text: The Contextual token lets every causal token see the whole text.",
        "- text: A decoder-only LLM turned into a text embedding model.",
        "---",
        "",
    ]
    dim = config.embedding_dim
    body = f"""# Causal2Vec embedding model

A [Causal2Vec](https://arxiv.org/abs/2507.23386) text-embedding model: a BERT-style encoder
(`{config.encoder.model_type}`) summarises the text into one *Contextual token*, which is placed in front of the
text in a causal decoder (`{config.decoder.model_type}`); the embedding ({dim} dimensions, pooling
`{config.pooling}`) concatenates the decoder's last hidden states of the Contextual token and EOS.

Base models: {", ".join(base_models)}.

## Usage

```python
from transformers import AutoModel
model = AutoModel.from_pretrained("PATH_OR_REPO", trust_remote_code=True)
docs = model.encode(["first document", "second document"], normalize_embeddings=True)
queries = model.encode(["a question"], prompt_name="query", normalize_embeddings=True)
```

```python
from sentence_transformers import SentenceTransformer
model = SentenceTransformer("PATH_OR_REPO", trust_remote_code=True)
emb = model.encode(["first document"], prompt_name="query")
```

```python
from transformers import pipeline
extract = pipeline("feature-extraction", model="PATH_OR_REPO", trust_remote_code=True)
vector = extract("some text")[0]
```

Queries carry an instruction: `model.config.query_prompt("Given a claim, retrieve evidence")` gives the prompt
`{config.prompt_template.format("...")!r}`; the instruction reaches the decoder only.

## Upload

```bash
hf upload USER/NAME PATH_TO_THIS_FOLDER .   # huggingface-cli upload USER/NAME PATH . with older hub clients
```
"""
    if data_files:
        body += "\n## Training data\n\n| file | rows |\n| --- | --- |\n"
        body += "\n".join(f"| {name} | {rows} |" for name, rows in data_files.items()) + "\n"
    if training and training.get("baseline"):
        body += (
            f"\n> **Trained as the `{training['baseline']}` baseline**, not as Causal2Vec: these weights hold the"
            " fine-tuned parts, and `AutoModel` loads them as Causal2Vec. Embed the way they were trained with"
            f' `evaluation.baselines.build_baseline("{training["baseline"]}", model)`, or evaluate with'
            f" `python -m evaluation run --model PATH --baseline {training['baseline']}`.\n"
        )
    if training:
        body += "\n## Training\n\n" + _table(training) + "\n"
    if evaluation:
        body += "\n## Evaluation\n\n" + _table(evaluation) + "\n"
    else:
        body += "\n## Evaluation\n\nNo evaluation results are recorded for this checkpoint.\n"
    path = folder / "README.md"
    path.write_text("\n".join(front) + body)
    return path


EVAL_HEADING = "## Evaluation\n"
EVAL_NOTE = (
    "Scores x100 from `python -m evaluation run` on local data (STS-B: Spearman; SciFact: nDCG@10; TREC, MR: accuracy)."
)
EVAL_COLUMNS = ["task", "split", "metric", "score", "n", "how"]


def update_evaluation(folder: Path, rows: list[dict[str, Any]], how: str) -> Path:
    """Put `rows` (task, split, metric, score, n), made as `how` says, into the Evaluation section of
    `folder/README.md`: a task's earlier row is replaced, other tasks' rows and the rest of the card are kept."""
    path = Path(folder) / "README.md"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: no model card to update")
    text = path.read_text()
    start = text.find(EVAL_HEADING)
    if start < 0:
        head, old, tail = text.rstrip("\n") + "\n\n", "", ""
    else:  # the section runs to the next heading or image line (the loss curve), or to the end
        rest = text[start + len(EVAL_HEADING) :]
        end = re.search(r"^(#{1,2} |!\[)", rest, flags=re.M)
        head, old, tail = text[:start], rest[: end.start()] if end else rest, "\n" + rest[end.start() :] if end else ""
    table: dict[str, list[str]] = {}
    for line in old.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and len(cells) == len(EVAL_COLUMNS) and cells[0] not in ("task", "---"):
            table[cells[0]] = cells
    for r in rows:
        table[r["task"]] = [r["task"], r["split"], r["metric"], f"{100 * r['score']:.2f}", str(r["n"]), how]
    lines = ["| " + " | ".join(EVAL_COLUMNS) + " |", "|" + " --- |" * len(EVAL_COLUMNS)]
    lines += ["| " + " | ".join(cells) + " |" for cells in table.values()]
    section = EVAL_HEADING + "\n" + EVAL_NOTE + "\n\n" + "\n".join(lines) + "\n"
    path.write_text(head + section + tail)
    return path
