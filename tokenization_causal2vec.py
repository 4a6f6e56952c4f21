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
    `[BOS] prompt C text EOS` (`"before_text"`). C is a placeholder id that the model replaces by the
    Contextual token; `contextual_index` gives its index among the row's real (unpadded) tokens.
    The text is truncated first; EOS is appended after truncation and is never cut.
    The encoder sees the text without the prompt.
    """

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
        self.decoder_add_bos = decoder_add_bos
        self.encoder_tokenizer = encoder_tokenizer
        for name in (
            "encoder_max_length",
            "decoder_max_length",
            "contextual_position",
            "prompt_template",
            "decoder_add_bos",
        ):
            self.init_kwargs[name] = getattr(self, name)
        if self.eos_token_id is None:
            raise ValueError("the decoder tokenizer has no eos_token: Causal2Vec pools the EOS token's state")
        if decoder_add_bos and self.bos_token_id is None:
            raise ValueError("decoder_add_bos=True but the decoder tokenizer has no bos_token")

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
        bos = [self.bos_token_id] if self.decoder_add_bos else []
        placeholder = self.pad_token_id if self.pad_token_id is not None else self.eos_token_id
        rows, indices = [], []
        for i, (prompt, body) in enumerate(zip(prompt_ids, body_ids, strict=True)):
            room = max_length - len(bos) - len(prompt) - 2  # 2 = C + EOS
            if room < 0:
                raise ValueError(
                    f"text {i}: its prompt is {len(prompt)} tokens, too long for decoder_max_length={max_length}"
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
        truncation: Any = None,
        max_length: int | None = None,
        return_tensors: str | None = None,
        **kwargs,
    ) -> BatchEncoding:
        """Tokenize texts for both the encoder and the decoder.

        A text that starts with a prompt made from `prompt_template` (what `encode(prompt=...)` and
        sentence-transformers' prompts produce) has that prompt sent to the decoder only. Texts are always
        truncated to the configured lengths (`max_length`, if given, lowers the decoder's).
        """
        if text_pair is not None:
            raise ValueError("Causal2VecTokenizer embeds single texts; text pairs are not supported")
        texts = check_texts(text)
        if padding == "max_length":
            raise ValueError("padding='max_length' is not supported: batches are padded to their longest row")
        pad = padding not in (False, "do_not_pad")
        split = [split_prompt(t, self.prompt_template) for t in texts]
        prompts, bodies = [p for p, _ in split], [b for _, b in split]
        limit = min(self.decoder_max_length, max_length or self.decoder_max_length)
        rows, indices = self._decoder_ids(prompts, bodies, limit)
        if self.encoder_tokenizer is None:
            raise ValueError("this Causal2VecTokenizer has no encoder_tokenizer; load it with from_pretrained")
        encoded = self.encoder_tokenizer(
            bodies, truncation=True, max_length=self.encoder_max_length, padding=pad, return_token_type_ids=False
        )
        data = self.pad({"input_ids": rows}, padding=pad)
        data["encoder_input_ids"] = encoded["input_ids"]
        data["encoder_attention_mask"] = encoded["attention_mask"]
        data["contextual_index"] = indices
        if return_tensors is not None and not pad and len({len(r) for r in rows}) > 1:
            raise ValueError("padding=False with return_tensors needs rows of equal length")
        return BatchEncoding(dict(data), tensor_type=return_tensors)
