"""One tokenizer for both halves of a Causal2Vec model.

It is the decoder's fast tokenizer with the encoder's tokenizer attached (saved in `encoder_tokenizer/`).
One call returns everything `Causal2VecModel.forward` takes, so `pipeline("feature-extraction")`,
sentence-transformers and the Hub widget work unchanged. See `tokenization_notes.md`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from transformers import AutoTokenizer, BatchEncoding, PreTrainedTokenizerFast

try:
    from .configuration_causal2vec import split_prompt
except ImportError:  # imported from a source checkout rather than as Hub remote code
    from configuration_causal2vec import split_prompt

ENCODER_SUBFOLDER = "encoder_tokenizer"
TRUNCATIONS = (None, True, "longest_first", "only_first")
PADDINGS = (None, True, False, "longest", "do_not_pad")
# tokenizer arguments accepted only with these values: what this tokenizer always does anyway
FIXED_KWARGS: dict[str, Any] = {
    "add_special_tokens": True,
    "is_split_into_words": False,
    "stride": 0,
    "pad_to_multiple_of": None,
    "return_token_type_ids": False,
    "return_attention_mask": True,
    "return_overflowing_tokens": False,
    "return_special_tokens_mask": False,
    "return_offsets_mapping": False,
    "return_length": False,
}
# `short_encoder_keys=True` makes a batch for sentence-transformers' trainer: the encoder's inputs named so that no
# key but the decoder's ends in `_input_ids` (the trainer splits a batch into one feature dict per `*_input_ids` key),
# and never exactly as wide as the decoder's (GradCache's mini-batches cut every tensor as wide as `attention_mask`
# after the decoder's last token): where both would be, the decoder gets one more padding column
SHORT_ENCODER_KEYS = {"encoder_input_ids": "encoder_ids", "encoder_attention_mask": "encoder_mask"}


def check_texts(texts: Any) -> list[str]:
    """Return `texts` as a list of strings, or raise a TypeError that says which item is wrong."""
    if isinstance(texts, str):
        return [texts]
    if texts is None:
        raise TypeError("expected a string or a list of strings, got None")
    if not isinstance(texts, Sequence):
        raise TypeError(f"expected a string or a list of strings, got {type(texts).__name__}")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"text {i} is {type(text).__name__}, not str: {text!r:.80}")
    return list(texts)


class Causal2VecTokenizer(PreTrainedTokenizerFast):
    """Decoder tokenizer that also produces the encoder's inputs and the Contextual token's slot.

    Decoder sequence: `[BOS] C prompt text EOS` (`contextual_position="before_instruction"`) or
    `[BOS] prompt C text EOS` (`"before_text"`); `[BOS]` is there when `decoder_add_bos` (see the config).
    C is a placeholder id that the model replaces by the Contextual token; `contextual_index` gives its index
    among the row's real (unpadded) tokens.
    The text is truncated first; EOS is appended after truncation and is never cut.
    The encoder sees the text without the prompt, and is always padded on the right.
    """

    accepts_prompt = True  # `__call__(texts, prompt=...)` routes a prompt to the decoder only (read by `encode`)

    model_input_names = [
        "input_ids",
        "attention_mask",
        "encoder_input_ids",
        "encoder_attention_mask",
        "contextual_index",
    ]

    def __init__(
        self,
        *args,
        encoder_max_length: int = 512,
        decoder_max_length: int = 512,
        contextual_position: str = "before_instruction",
        prompt_template: str = "Instruct: {}\nQuery: ",
        document_prompt: str = "",
        decoder_add_bos: bool = False,
        encoder_tokenizer: PreTrainedTokenizerFast | None = None,
        **kwargs,
    ):
        kwargs.setdefault("model_max_length", decoder_max_length)
        super().__init__(*args, **kwargs)
        self.encoder_max_length = encoder_max_length
        self.decoder_max_length = decoder_max_length
        self.contextual_position = contextual_position
        self.prompt_template = prompt_template
        self.document_prompt = document_prompt
        self.decoder_add_bos = decoder_add_bos
        self.encoder_tokenizer = encoder_tokenizer
        for name in (
            "encoder_max_length",
            "decoder_max_length",
            "contextual_position",
            "prompt_template",
            "document_prompt",
            "decoder_add_bos",
        ):
            self.init_kwargs[name] = getattr(self, name)
        if self.eos_token_id is None:
            raise ValueError("the decoder tokenizer has no eos_token: Causal2Vec pools the EOS token's state")

    @property
    def decoder_prefix_ids(self) -> list[int]:
        """What starts every decoder row: `[BOS]` (EOS where the tokenizer has no BOS) if `decoder_add_bos`."""
        if not self.decoder_add_bos:
            return []
        return [self.bos_token_id if self.bos_token_id is not None else self.eos_token_id]

    @property
    def encoder_tokenizer(self) -> PreTrainedTokenizerFast | None:
        """The encoder's tokenizer; it pads on the right (`cls` pooling reads the first token's state)."""
        return self._encoder_tokenizer

    @encoder_tokenizer.setter
    def encoder_tokenizer(self, value: PreTrainedTokenizerFast | None) -> None:
        if value is not None:
            value.padding_side = "right"
        self._encoder_tokenizer = value

    @classmethod
    def convert_to_native_format(cls, trust_remote_code: bool = False, **kwargs):
        # load tokenizer.json as saved: transformers rebuilds subclasses that define __init__ from vocab/merges
        # alone (dropping e.g. the byte-level pre-tokenizer) unless the class is trusted remote code
        return super().convert_to_native_format(trust_remote_code=True, **kwargs)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        folder = os.path.join(str(pretrained_model_name_or_path), kwargs.get("subfolder") or "")
        if os.path.isdir(folder) and not os.path.isfile(os.path.join(folder, "tokenizer.json")):
            raise OSError(f"{folder} has no tokenizer.json: a Causal2Vec checkpoint keeps the decoder tokenizer there")
        tokenizer = super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
        hub_kwargs = {k: kwargs[k] for k in ("cache_dir", "revision", "token", "local_files_only") if k in kwargs}
        try:
            tokenizer.encoder_tokenizer = AutoTokenizer.from_pretrained(
                pretrained_model_name_or_path, subfolder=ENCODER_SUBFOLDER, **hub_kwargs
            )
        except (OSError, ValueError) as err:
            raise OSError(
                f"{pretrained_model_name_or_path} has no encoder tokenizer in {ENCODER_SUBFOLDER}/: "
                "a Causal2Vec checkpoint holds the decoder tokenizer at its root and the encoder's there"
            ) from err
        return tokenizer

    def save_pretrained(self, save_directory, *args, **kwargs):
        files = super().save_pretrained(save_directory, *args, **kwargs)
        if self.encoder_tokenizer is None:
            raise ValueError("this Causal2VecTokenizer has no encoder_tokenizer to save")
        files += tuple(self.encoder_tokenizer.save_pretrained(os.path.join(save_directory, ENCODER_SUBFOLDER)))
        return files

    def _decoder_ids(self, prompts: list[str], bodies: list[str], max_length: int) -> tuple[list, list]:
        """Build each row's decoder ids (C as a placeholder) and C's index in the row."""
        tokenize = super().__call__
        # verbose=False: bodies longer than model_max_length are expected here; they are cut just below
        prompt_ids = [[]] * len(bodies)
        if any(prompts):
            prompt_ids = tokenize(prompts, add_special_tokens=False, verbose=False)["input_ids"]
        body_ids = tokenize(bodies, add_special_tokens=False, verbose=False)["input_ids"]
        bos = self.decoder_prefix_ids
        placeholder = self.pad_token_id if self.pad_token_id is not None else self.eos_token_id
        rows, indices = [], []
        for i, (prompt, body) in enumerate(zip(prompt_ids, body_ids, strict=True)):
            room = max_length - len(bos) - len(prompt) - 2  # 2 = C + EOS
            if room < 0:
                raise ValueError(
                    f"text {i}: its prompt is {len(prompt)} tokens, too long for decoder_max_length={max_length}"
                    + (
                        f" (lowered from {self.decoder_max_length} by max_length)"
                        if max_length < self.decoder_max_length
                        else ""
                    )
                )
            body = body[:room]
            if self.contextual_position == "before_instruction":
                head = bos + [placeholder] + prompt
                indices.append(len(bos))
            else:
                head = bos + prompt + [placeholder]
                indices.append(len(bos) + len(prompt))
            rows.append(head + body + [self.eos_token_id])
        return rows, indices

    def __call__(
        self,
        text: str | list[str],
        text_pair: None = None,
        padding: bool | str = True,
        truncation: bool | str | None = None,
        max_length: int | None = None,
        return_tensors: str | None = None,
        prompt: str | Sequence[str] | None = None,
        padding_side: str | None = None,
        verbose: bool = True,
        short_encoder_keys: bool = False,
        **kwargs: Any,
    ) -> BatchEncoding:
        """Tokenize texts for both the encoder and the decoder.

        `prompt` (one string, or one per text) goes to the decoder only. Without it, a text that starts with a
        prompt made from `prompt_template` or with `document_prompt` (what sentence-transformers' prompts
        produce) has that prompt split off and sent to the decoder only. Texts are always truncated to the
        configured lengths; `max_length`, if given, lowers both sides' (training truncates this way while the
        model keeps its own lengths). `padding_side` sets the decoder's
        (the encoder's is always right). Other tokenizer arguments are
        accepted only with the value this tokenizer uses anyway (e.g. `add_special_tokens=True`).
        `short_encoder_keys=True` returns the encoder's inputs as `encoder_ids` / `encoder_mask`, never exactly as
        wide as the decoder's (the exported `sentence_bert_config.json` asks for it; `forward` takes either name; see
        SHORT_ENCODER_KEYS).
        """
        if text_pair is not None or kwargs.get("text_target") is not None:
            raise ValueError("Causal2VecTokenizer embeds single texts; text pairs are not supported (nor text_target)")
        texts = check_texts(text)
        self._check_options(padding, truncation, max_length, kwargs)
        pad = padding not in (False, "do_not_pad")
        if prompt is None:
            split = [split_prompt(t, self.prompt_template, self.document_prompt) for t in texts]
            prompts, bodies = [p for p, _ in split], [b for _, b in split]
        else:
            prompts = check_texts(prompt) * len(texts) if isinstance(prompt, str) else check_texts(prompt)
            if len(prompts) != len(texts):
                raise ValueError(f"got {len(prompts)} prompts for {len(texts)} texts: pass one prompt or one per text")
            bodies = texts
        if self.encoder_tokenizer is None:
            raise ValueError("this Causal2VecTokenizer has no encoder_tokenizer; load it with from_pretrained")
        if not texts:
            return _rename(self._empty_batch(return_tensors), short_encoder_keys)
        limit = min(self.decoder_max_length, max_length or self.decoder_max_length)
        rows, indices = self._decoder_ids(prompts, bodies, limit)
        encoded = self.encoder_tokenizer(
            bodies,
            truncation=True,
            max_length=min(self.encoder_max_length, max_length or self.encoder_max_length),
            padding=pad,
            padding_side="right",
            return_token_type_ids=False,
        )
        widths = {max(map(len, rows)), max(map(len, encoded["input_ids"]))}
        if short_encoder_keys and pad and len(widths) == 1:  # see SHORT_ENCODER_KEYS
            data = self.pad(
                {"input_ids": rows}, padding="max_length", max_length=widths.pop() + 1, padding_side=padding_side
            )
        else:
            data = self.pad({"input_ids": rows}, padding=pad, padding_side=padding_side)
        data["encoder_input_ids"] = encoded["input_ids"]
        data["encoder_attention_mask"] = encoded["attention_mask"]
        data["contextual_index"] = indices
        if return_tensors is not None and not pad and len({len(r) for r in rows}) > 1:
            raise ValueError("padding=False with return_tensors needs rows of equal length")
        return _rename(BatchEncoding(dict(data), tensor_type=return_tensors), short_encoder_keys)

    @staticmethod
    def _check_options(padding: Any, truncation: Any, max_length: int | None, kwargs: dict[str, Any]) -> None:
        """Refuse options this tokenizer cannot honour, rather than ignoring them."""
        if padding == "max_length":
            raise ValueError("padding='max_length' is not supported: batches are padded to their longest row")
        if padding not in PADDINGS:
            raise ValueError(f"unsupported padding={padding!r}; expected one of {PADDINGS}")
        if truncation not in TRUNCATIONS:
            raise ValueError(
                f"truncation={truncation!r} is not supported: Causal2VecTokenizer always truncates (keeping EOS) to "
                "encoder_max_length and decoder_max_length"
            )
        if max_length is not None and max_length < 4:
            raise ValueError(f"max_length must be >= 4 (special tokens, C, EOS and one text token), got {max_length}")
        kwargs.pop("text_target", None)
        for name, value in kwargs.items():
            if name not in FIXED_KWARGS:
                raise ValueError(f"Causal2VecTokenizer does not support the argument {name}={value!r}")
            if value != FIXED_KWARGS[name] and value is not None:
                raise ValueError(
                    f"Causal2VecTokenizer does not support {name}={value!r}; it always uses {FIXED_KWARGS[name]!r}"
                )

    def _empty_batch(self, return_tensors: str | None) -> BatchEncoding:
        """The batch of zero texts: every key, zero rows."""
        batch = BatchEncoding({name: [] for name in self.model_input_names}, tensor_type=return_tensors)
        if return_tensors is not None:
            for name in self.model_input_names[:4]:
                batch[name] = batch[name].reshape(0, 0)
        return batch


def _rename(batch: BatchEncoding, short_encoder_keys: bool) -> BatchEncoding:
    """`batch` with the encoder's keys renamed per `SHORT_ENCODER_KEYS` when `short_encoder_keys`."""
    if not short_encoder_keys:
        return batch
    return BatchEncoding({SHORT_ENCODER_KEYS.get(k, k): v for k, v in batch.items()})
