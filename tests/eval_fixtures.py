"""Small evaluation data sets written to a temporary folder, in the layout of /work/shared/data/eval."""

from __future__ import annotations

import json
from pathlib import Path

STS_ROWS = [
    ("A man is playing a guitar.", "A man plays the guitar.", 4.8),
    ("A woman is slicing an onion.", "A dog runs in the park.", 0.2),
    ("Kids are playing football.", "Children play soccer outside.", 4.0),
    ("The stock market fell today.", "Shares dropped sharply on Monday.", 3.6),
    ("A cat sleeps on the sofa.", "Rain is expected tomorrow.", 0.0),
    ("He cooked pasta for dinner.", "He made spaghetti in the evening.", 3.9),
]
CLASS_TEXTS = {
    "NUM": [
        "How many people live in Paris ?",
        "How far is the moon ?",
        "What year did the war end ?",
        "How old is the universe ?",
        "How much does a car cost ?",
        "How tall is Everest ?",
        "How many legs do spiders have ?",
        "When was the bridge built ?",
        "How long is the Nile ?",
        "What is the population of Peru ?",
    ],
    "LOC": [
        "Where is the Eiffel Tower ?",
        "What country is Lima in ?",
        "Where do penguins live ?",
        "Which city hosts the Louvre ?",
        "Where is Mount Fuji ?",
        "What state is Austin in ?",
        "Where was Mozart born ?",
        "Which river flows through Cairo ?",
        "Where is the Sahara ?",
        "What continent is Chile on ?",
    ],
}
DOCS = {
    "d1": ("Guitars", "The guitar is a string instrument played by plucking."),
    "d2": ("Onions", "Onions are vegetables used in cooking."),
    "d3": ("Football", "Football is a team sport played with a ball."),
    "d4": ("Stocks", "A stock market is where shares of companies are traded."),
    "d5": ("Cats", "Cats are small domesticated carnivorous mammals."),
}
QUERIES = {
    "q1": "Which instrument is plucked?",
    "q2": "Where are shares traded?",
    "q3": "What do cats eat?",
    "q9": "an unjudged query",
}
QRELS = [("q1", "d1", 1), ("q2", "d4", 1), ("q3", "d5", 1)]


def write_tsv(path: Path, header: list[str], rows: list[tuple]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["\t".join(header)] + ["\t".join(str(x) for x in row) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def make_data(root: Path) -> Path:
    """Write stsb/, scifact/, trec/ and mr/ fixtures under `root` and return it."""
    for split in ("test", "dev"):
        write_tsv(root / "stsb" / f"{split}.tsv", ["sentence1", "sentence2", "score"], STS_ROWS)
    rows = [(t, label) for label, texts in CLASS_TEXTS.items() for t in texts]
    write_tsv(root / "trec" / "train.tsv", ["text", "label"], rows[:7] + rows[10:17])
    write_tsv(root / "trec" / "test.tsv", ["text", "label"], rows[7:10] + rows[17:])
    write_tsv(root / "mr" / "data.tsv", ["text", "label"], rows)
    sci = root / "scifact"
    sci.mkdir(parents=True, exist_ok=True)
    (sci / "corpus.jsonl").write_text(
        "".join(json.dumps({"_id": k, "title": t, "text": x}) + "\n" for k, (t, x) in DOCS.items())
    )
    (sci / "queries.jsonl").write_text("".join(json.dumps({"_id": k, "text": v}) + "\n" for k, v in QUERIES.items()))
    write_tsv(sci / "qrels" / "test.tsv", ["query-id", "corpus-id", "score"], QRELS)
    return root


def make_train_data(folder: Path, rows: int = 16) -> Path:
    """Two small training files in the `train/` JSONL format (query, pos, neg, instruction) under `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    texts = [t for group in CLASS_TEXTS.values() for t in group]
    for name, instruction in (("snli", "Retrieve an entailed sentence"), ("scifact", "Retrieve evidence")):
        lines = [
            json.dumps(
                {
                    "query": texts[i % len(texts)],
                    "pos": [f"{texts[(i + 1) % len(texts)]} ({name} {i})"],
                    "neg": [f"unrelated {name} text {i}"],
                    "instruction": instruction,
                }
            )
            for i in range(rows)
        ]
        (folder / f"{name}.jsonl").write_text("\n".join(lines) + "\n")
    return folder


def make_sentence_transformer(folder: Path, prompts: dict[str, str] | None = None) -> Path:
    """A tiny random BERT + mean pooling SentenceTransformer saved in `folder` (MiniLM's tokenizer)."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    from transformers import AutoTokenizer, BertConfig, BertModel

    from causal2vec.parts import default_encoder_path

    tokenizer = AutoTokenizer.from_pretrained(default_encoder_path())
    config = BertConfig(
        vocab_size=len(tokenizer), hidden_size=24, intermediate_size=48, num_hidden_layers=1, num_attention_heads=2
    )
    torch.manual_seed(0)
    BertModel(config).save_pretrained(folder / "bert")
    tokenizer.save_pretrained(folder / "bert")
    st = SentenceTransformer(modules=[Transformer(str(folder / "bert")), Pooling(24)], prompts=prompts, device="cpu")
    st.save(str(folder / "st"))
    return folder / "st"
