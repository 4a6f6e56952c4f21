"""Baselines on the same decoder (and encoder) as a Causal2Vec model, behind the same interface.

`build_baseline(name, model)` returns an `nn.Module` that shares `model.decoder` / `model.encoder` (no copies)
and has what the evaluation harness and the train loop use: `.tokenizer(texts, return_tensors="pt")`,
`forward(**batch).sentence_embedding`, `.decoder` (None for "encoder"), `.config.embedding_dim`,
`.config.query_prompt()` and `encode()` (the model's own `EmbedderMixin`).

All decoder baselines run one forward: the tokenizer lays out each row and marks the tokens to pool
(`pool_mask`); the module runs the decoder (causal, or with a full attention mask for "bidirectional") with
position ids counted over real tokens, as `Causal2VecModel.forward` does, and averages the marked states.

    eos            [BOS] prompt text EOS                       pool: EOS
    mean           [BOS] prompt text EOS                       pool: mean over the text tokens
    echo           [BOS] prompt Rewrite..: text\\nRewritten..: text EOS   pool: mean over the second copy
    bidirectional  [BOS] prompt text EOS, no causal mask       pool: mean over the text tokens
    incontext      [BOS] k demos, prompt text EOS              pool: EOS
    encoder        the encoder alone on the text               pool: mean over its tokens

`decoder_max_length` bounds the row a text makes ([BOS] prompt text EOS, with Echo's template and second copy);
the in-context demonstrations are a fixed prefix added on top of it (4 demos: ~125 tokens more), so a
checkpoint with a short decoder budget (e.g. 64) still gets the same text room as the other baselines.
"bidirectional" passes a 4D mask, which only the `sdpa` and `eager` attention implementations honour.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import BatchEncoding, PreTrainedTokenizerFast

from configuration_causal2vec import split_prompt
from modeling_causal2vec import Causal2VecOutput, EmbedderMixin, masked_mean
from tokenization_causal2vec import check_texts

BASELINES = ("eos", "mean", "echo", "bidirectional", "incontext", "encoder")
DEMOS_FILE = Path(__file__).with_name("demos.json")
# Echo's template (Springer et al.): "Rewrite the sentence: {text}\nRewritten sentence: {text}". The parts are
# tokenized without their trailing space and the text with a leading one, as a joint tokenization would do
# (byte-level BPE: ": " alone ends in a lone space token, and the text would lose its leading-space token).
ECHO_TEMPLATE = ("Rewrite the sentence:", "\nRewritten sentence:")
BIDIRECTIONAL_ATTENTION = ("sdpa", "eager")


@dataclass
class BaselineConfig:
    """What the harness and train loop read from `module.config`; the prompt comes from the Causal2Vec config."""

    name: str
    embedding_dim: int
    decoder_max_length: int
    prompt_template: str
    query_instruction: str

    def query_prompt(self, instruction: str | None = None) -> str:
        return self.prompt_template.format(instruction or self.query_instruction)


class BaselineTokenizer:
    """Lays out decoder rows for one baseline from the Causal2Vec tokenizer's plain decoder tokenization.

    Returns `input_ids`, `attention_mask` and `pool_mask` (1 on the tokens to average). A text's prompt
    (as made by `config.query_prompt`) stays in front of the text; the text is truncated so that the row
    fits `max_length` (`decoder_max_length`), and EOS is always kept. In-context demonstrations are not
    counted in `max_length`: they come on top. `padding_side` is "right" or "left".
    """

    def __init__(self, base: Any, kind: str, demos: list[tuple[str, str]] | None = None, max_length: int = 512):
        self.base = base
        self.kind = kind
        self.max_length = max_length
        self.padding_side = "right"
        self.pad_token_id = base.pad_token_id if base.pad_token_id is not None else base.eos_token_id
        self.bos = base.decoder_prefix_ids
        self.demos: list[int] = []
        if kind == "incontext":
            text = "".join(f"{base.prompt_template.format('Embed the text')}{q}\nResponse: {r}\n\n" for q, r in demos)
            self.demos = self.ids([text])[0]
        self.prefix = self.bos + self.demos  # what precedes the prompt; only `bos` counts toward max_length
        self.echo_parts = self.ids(list(ECHO_TEMPLATE)) if kind == "echo" else []

    def ids(self, texts: list[str]) -> list[list[int]]:
        """Plain decoder token ids, no special tokens (the layout cuts them to the budget: no length warning)."""
        if not texts:
            return []
        return PreTrainedTokenizerFast.__call__(self.base, texts, add_special_tokens=False, verbose=False)["input_ids"]

    def _with_budget(self, max_length: int) -> BaselineTokenizer:
        lowered = copy.copy(self)
        lowered.max_length = max_length
        return lowered

    def layout(self, prompt: list[int], body: list[int], i: int) -> tuple[list[int], list[int]]:
        """One row's ids and pool mask."""
        eos = self.base.eos_token_id
        if self.kind == "echo":
            first, second = self.echo_parts
            room = (self.max_length - len(self.bos) - len(prompt) - len(first) - len(second) - 1) // 2
            self._check(room, i)
            body = body[:room]
            head = self.prefix + prompt + first + body + second
            ids = head + body + [eos]
            pool = [0] * len(head) + [1] * len(body) + [0 if body else 1]
            return ids, pool
        room = self.max_length - len(self.bos) - len(prompt) - 1
        self._check(room, i)
        body = body[:room]
        head = self.prefix + prompt
        ids = head + body + [eos]
        if self.kind in ("mean", "bidirectional") and body:
            pool = [0] * len(head) + [1] * len(body) + [0]
        else:
            pool = [0] * len(head) + [0] * len(body) + [1]
        return ids, pool

    def _check(self, room: int, i: int) -> None:
        if room < 0:
            raise ValueError(f"text {i}: prompt and template leave no room within decoder_max_length={self.max_length}")

    def __call__(
        self, text: str | list[str], return_tensors: str | None = None, max_length: int | None = None, **kwargs: Any
    ) -> BatchEncoding:
        """Rows for `text`; `max_length` lowers the configured budget (as `Causal2VecTokenizer`'s does)."""
        if max_length and max_length < self.max_length:
            return self._with_budget(max_length)(text, return_tensors)
        texts = check_texts(text)
        split = [split_text(t, self.base) for t in texts]
        prompts = self.ids([p for p, _ in split]) if any(p for p, _ in split) else [[] for _ in texts]
        if self.kind == "echo":  # the text follows "...sentence:" after a space, as in one joint tokenization
            bodies = self.ids([" " + b if b and not b[0].isspace() else b for _, b in split])
        else:
            bodies = self.ids([b for _, b in split])
        rows = [self.layout(p, b, i) for i, (p, b) in enumerate(zip(prompts, bodies, strict=True))]
        return pad_rows(
            [r[0] for r in rows], [r[1] for r in rows], self.pad_token_id, self.padding_side, return_tensors
        )


def split_text(text: str, base: Any) -> tuple[str, str]:
    """(prompt, body) of a text as the Causal2Vec tokenizer `base` splits it (query template or document prompt)."""
    return split_prompt(text, base.prompt_template, getattr(base, "document_prompt", ""))


def pad_rows(rows: list[list[int]], pools: list[list[int]], pad_id: int, side: str, return_tensors: str | None):
    """Pad ids, attention mask and pool mask to the longest row on `side`."""
    width = max(map(len, rows), default=0)
    data: dict[str, list] = {"input_ids": [], "attention_mask": [], "pool_mask": []}
    for ids, pool in zip(rows, pools, strict=True):
        n = width - len(ids)
        for key, values, fill in (
            ("input_ids", ids, pad_id),
            ("attention_mask", [1] * len(ids), 0),
            ("pool_mask", pool, 0),
        ):
            data[key].append([fill] * n + values if side == "left" else values + [fill] * n)
    return BatchEncoding(data, tensor_type=return_tensors)


def full_attention_mask(attention_mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """4D additive mask (batch, 1, L, L): every real token attends to every real token, in both directions.

    Transformers passes a 4D mask to the attention unchanged (no causal mask is added). Padding queries attend
    to themselves only, so that no row of the softmax is empty.
    """
    real = attention_mask.bool()
    allowed = real[:, None, :, None] & real[:, None, None, :]
    allowed = allowed | torch.eye(real.shape[1], dtype=torch.bool, device=real.device)
    zero = torch.zeros((), dtype=dtype, device=real.device)
    return torch.where(allowed, zero, torch.finfo(dtype).min)


class DecoderBaseline(EmbedderMixin, nn.Module):
    """eos / mean / echo / bidirectional / incontext on the model's own decoder."""

    def __init__(self, kind: str, model: Any, demos: list[tuple[str, str]] | None = None):
        super().__init__()
        self.kind = kind
        if kind == "bidirectional":
            attn = getattr(model.decoder.config, "_attn_implementation", None) or "eager"
            if attn not in BIDIRECTIONAL_ATTENTION:
                raise ValueError(
                    f"the bidirectional baseline needs attn_implementation 'sdpa' or 'eager' (it passes a 4D full"
                    f" attention mask, which {attn!r} ignores or mishandles); this decoder uses {attn!r}: reload"
                    " the model with attn_implementation='sdpa'"
                )
        self.decoder = model.decoder  # shared, not copied
        cfg = model.config
        self.config = BaselineConfig(
            kind, cfg.decoder.hidden_size, cfg.decoder_max_length, cfg.prompt_template, cfg.query_instruction
        )
        self.tokenizer = BaselineTokenizer(model.tokenizer, kind, demos, cfg.decoder_max_length)

    def describe(self) -> str:
        """What, beyond the weights, decides this baseline's embeddings (part of the embedding cache key)."""
        tok = self.tokenizer
        return json.dumps([self.kind, tok.prefix, tok.echo_parts, "echo-space" if self.kind == "echo" else None])

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, pool_mask: torch.Tensor, **kwargs: Any
    ) -> Causal2VecOutput:
        embeds = self.decoder.get_input_embeddings()(input_ids)
        position_ids = (attention_mask.long().cumsum(1) - 1).clamp(min=0)
        mask = full_attention_mask(attention_mask, embeds.dtype) if self.kind == "bidirectional" else attention_mask
        hidden = self.decoder(
            inputs_embeds=embeds, attention_mask=mask, position_ids=position_ids, use_cache=False, return_dict=True
        ).last_hidden_state
        return Causal2VecOutput(sentence_embedding=masked_mean(hidden, pool_mask), last_hidden_state=hidden)


class EncoderTokenizer:
    """The model's encoder tokenizer on the text alone (a query prompt is dropped: the encoder never saw one)."""

    def __init__(self, base: Any, max_length: int):
        self.base = base
        self.max_length = max_length
        self.padding_side = "right"

    def __call__(
        self, text: str | list[str], return_tensors: str | None = None, max_length: int | None = None, **kwargs: Any
    ) -> BatchEncoding:
        texts = [split_text(t, self.base)[1] for t in check_texts(text)]
        limit = min(self.max_length, max_length or self.max_length)
        enc = self.base.encoder_tokenizer(
            texts, truncation=True, max_length=limit, padding=True, return_token_type_ids=False
        )
        return BatchEncoding(
            {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}, tensor_type=return_tensors
        )


class EncoderBaseline(EmbedderMixin, nn.Module):
    """The Causal2Vec encoder alone, mean-pooled (what all-MiniLM-L6-v2 was trained for)."""

    def __init__(self, model: Any):
        super().__init__()
        self.encoder = model.encoder  # shared, not copied
        self.decoder = None
        cfg = model.config
        self.config = BaselineConfig(
            "encoder", cfg.encoder.hidden_size, cfg.decoder_max_length, cfg.prompt_template, cfg.query_instruction
        )
        self.tokenizer = EncoderTokenizer(model.tokenizer, cfg.encoder_max_length)

    def describe(self) -> str:
        """Part of the embedding cache key (see `DecoderBaseline.describe`)."""
        return json.dumps(["encoder", self.tokenizer.max_length])

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **kwargs: Any) -> Causal2VecOutput:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return Causal2VecOutput(sentence_embedding=masked_mean(hidden, attention_mask), last_hidden_state=hidden)


def load_demos(path: str | Path = DEMOS_FILE, k: int = 4) -> list[tuple[str, str]]:
    """The first k (query, response) demonstrations of a JSON list of {"query", "response"}."""
    items = json.loads(Path(path).read_text(encoding="utf-8"))
    if len(items) < k:
        raise ValueError(f"{path} holds {len(items)} demonstrations, fewer than k={k}")
    return [(d["query"], d["response"]) for d in items[:k]]


def build_baseline(name: str, model: Any, **options: Any) -> nn.Module:
    """A baseline named `name` (one of `BASELINES`) on `model`'s decoder/encoder weights (shared, not copied).

    Options: for "incontext", `k` (default 4) and `demos` (a list of (query, response) pairs, or a JSON file path).
    """
    if name not in BASELINES:
        raise ValueError(f"unknown baseline {name!r}; expected one of {', '.join(BASELINES)}")
    if name == "encoder":
        if options:
            raise ValueError(f"baseline 'encoder' takes no options, got {sorted(options)}")
        return EncoderBaseline(model)
    demos = None
    if name == "incontext":
        k = int(options.pop("k", 4))
        demos = options.pop("demos", None)
        demos = load_demos(demos or DEMOS_FILE, k) if demos is None or isinstance(demos, (str, Path)) else demos[:k]
    if options:
        raise ValueError(f"baseline {name!r} got unknown options {sorted(options)}")
    return DecoderBaseline(name, model, demos)
