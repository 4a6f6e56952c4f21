"""Causal2Vec: a causal LM turned text embedder by one Contextual token (arXiv 2507.23386).

Top to bottom like the paper: a BERT-style encoder reads the text and is pooled into one vector
(`pool_encoder`), an MLP connector maps it to the decoder's hidden size (the Contextual token C),
C replaces a placeholder slot in the decoder's `inputs_embeds`, the unmodified causal decoder runs,
and the embedding is the concatenation of the last hidden states of C and EOS (`pool_decoder`).
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, AutoTokenizer, PreTrainedModel
from transformers.activations import ACT2FN
from transformers.utils import ModelOutput

try:
    from .configuration_causal2vec import Causal2VecConfig
    from .hub_causal2vec import CARD_FILE, write_card, write_sentence_transformers_files
    from .tokenization_causal2vec import Causal2VecTokenizer, check_texts
except ImportError:  # imported from a source checkout rather than as Hub remote code
    from configuration_causal2vec import Causal2VecConfig
    from hub_causal2vec import CARD_FILE, write_card, write_sentence_transformers_files
    from tokenization_causal2vec import Causal2VecTokenizer, check_texts

if TYPE_CHECKING:  # never run: transformers finds this relative import and copies handler.py (the Inference
    # Endpoints handler) with the remote code, into its module cache when loading and into the folder on saving
    from .handler import EndpointHandler  # noqa: F401


class Causal2VecConnector(nn.Module):
    """MLP from the pooled encoder output to one decoder input embedding (the Contextual token), ending with an
    RMSNorm at the decoder's input-embedding scale when `connector_norm="rms"`."""

    def __init__(self, config: Causal2VecConfig):
        super().__init__()
        sizes = [config.encoder.hidden_size]
        sizes += [config.connector_hidden_size] * (config.connector_num_layers - 1) + [config.connector_output_size]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:], strict=False))
        self.act = ACT2FN[config.connector_activation]
        self.norm = nn.RMSNorm(config.connector_output_size, eps=1e-6) if config.connector_norm == "rms" else None

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            pooled = layer(pooled if i == 0 else self.act(pooled))
        return pooled if self.norm is None else self.norm(pooled)


def input_embedding_rms(decoder: nn.Module, samples: int = 4096) -> float:
    """Root-mean-square of the decoder's input embeddings (the embedding layer's output, so a family that scales
    its embeddings, like Gemma, is measured as the decoder sees them), over up to `samples` evenly spaced ids."""
    embedding = decoder.get_input_embeddings()
    vocab = embedding.weight.shape[0]
    ids = torch.linspace(0, vocab - 1, min(samples, vocab), device=embedding.weight.device).long()
    with torch.no_grad():
        return float(embedding(ids).float().pow(2).mean().sqrt())


def masked_mean(states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of `states` (batch, length, hidden) over the positions where `mask` (batch, length) is non-zero."""
    m = mask.unsqueeze(-1).to(states.dtype)
    return (states * m).sum(1) / m.sum(1).clamp(min=1)


@dataclass
class Causal2VecOutput(ModelOutput):
    """`sentence_embedding` comes first so that `pipeline("feature-extraction")` returns it."""

    sentence_embedding: torch.Tensor | None = None
    last_hidden_state: torch.Tensor | None = None
    contextual_token: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None


class EmbedderMixin:
    """`encode()` for any module with `.tokenizer`, `.config.query_prompt()` and a forward that returns
    `.sentence_embedding` (Causal2VecModel, and the baselines in `causal2vec/baselines.py`)."""

    @torch.inference_mode()
    def encode(
        self,
        sentences: str | Sequence[str],
        prompt_name: str | None = None,
        prompt: str | None = None,
        batch_size: int = 32,
        show_progress_bar: bool | None = None,
        convert_to_numpy: bool = True,
        convert_to_tensor: bool = False,
        normalize_embeddings: bool = False,
        dtype: torch.dtype | None = None,
        device: str | torch.device | None = None,
        truncate_dim: int | None = None,
    ):
        """Embed texts, sentence-transformers style.

        `prompt` goes to the decoder only, in front of every text (use `config.query_prompt(instruction)` to
        build a query prompt); `prompt_name="query"` uses the configured query prompt, `"document"` the
        configured `document_prompt` (empty by default). Texts run in length-sorted batches and come back in
        input order. `dtype` (e.g. `torch.bfloat16`) runs the forward under autocast. `device` runs on that
        device; the model goes back where it was afterwards. `truncate_dim` keeps the first `truncate_dim`
        dimensions (1 to `config.embedding_dim`), before `normalize_embeddings` as in sentence-transformers; with
        `contextual_eos` pooling the first half is the Contextual token's state, the second EOS's. A single string
        gives a 1-D result; an empty list gives shape (0, dim).
        """
        single = isinstance(sentences, str)
        texts = check_texts(sentences)
        prompt = self._encode_prompt(prompt_name, prompt)
        width = self._truncated_width(truncate_dim)
        out, _ = self._embed(texts, prompt, batch_size, show_progress_bar, normalize_embeddings, dtype, device, width)
        if single:
            out = out[0]
        if convert_to_tensor:
            return out
        return out.cpu().numpy() if convert_to_numpy else list(out.cpu())

    @torch.inference_mode()
    def encode_with_token_counts(
        self,
        sentences: Sequence[str],
        prompt: str | None = None,
        batch_size: int = 32,
        dtype: torch.dtype | None = None,
    ) -> tuple[Any, list[int]]:
        """`encode(sentences, prompt=prompt, batch_size=batch_size, dtype=dtype)` (a float32 numpy array, not
        normalised) and each text's decoder token count (prompt, C and EOS included), read from the attention
        masks of the very batches the forward ran on: what a server reports as usage without tokenizing twice."""
        texts = check_texts(sentences)
        prompt = self._encode_prompt(None, prompt)
        out, tokens = self._embed(texts, prompt, batch_size, False, False, dtype, None, self.config.embedding_dim)
        return out.cpu().numpy(), tokens.tolist()

    def _encode_prompt(self, prompt_name: str | None, prompt: str | None) -> str | None:
        """The decoder prompt that `prompt_name` or `prompt` (not both) asks for; None for none."""
        if prompt_name is not None:
            if prompt is not None:
                raise ValueError("pass prompt or prompt_name, not both")
            prompts = {"query": self.config.query_prompt(), "document": getattr(self.config, "document_prompt", "")}
            if prompt_name not in prompts:
                raise ValueError(f"unknown prompt_name {prompt_name!r}; expected one of {sorted(prompts)}")
            prompt = prompts[prompt_name]
        if prompt is not None and not isinstance(prompt, str):
            raise TypeError(f"prompt must be a string, got {type(prompt).__name__}")
        return prompt

    def _truncated_width(self, truncate_dim: int | None) -> int:
        """How many leading dimensions `encode` keeps: all for None, else `truncate_dim`, checked to be an integer
        from 1 to the embedding size."""
        dim = self.config.embedding_dim
        if truncate_dim is None:
            return dim
        if isinstance(truncate_dim, bool) or not isinstance(truncate_dim, numbers.Integral):
            raise TypeError(f"truncate_dim must be an int or None, got {type(truncate_dim).__name__}")
        if not 1 <= truncate_dim <= dim:
            raise ValueError(f"truncate_dim must be from 1 to {dim} (the embedding size), got {truncate_dim}")
        return int(truncate_dim)

    def _embed(
        self,
        texts: list[str],
        prompt: str | None,
        batch_size: int,
        show_progress_bar: bool | None,
        normalize: bool,
        dtype: torch.dtype | None,
        device: str | torch.device | None,
        width: int,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(embeddings (n, width) in float32 on `device`, decoder tokens per text (n,) on CPU): each text tokenized
        once, in length-sorted batches of `batch_size`, results in input order."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        tokenize: dict[str, Any] = {"return_tensors": "pt"}
        if prompt and texts:
            if getattr(self.tokenizer, "accepts_prompt", False):
                tokenize["prompt"] = prompt  # decoder only
            else:  # a tokenizer without a prompt argument recognises prompts at the start of the text
                texts = [prompt + t for t in texts]
        home = next(self.parameters()).device
        device = torch.device(device) if device is not None else home
        was_training = self.training
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        chunks = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
        if show_progress_bar is None:
            show_progress_bar = len(chunks) > 1 and _logger_shows_info()
        out = torch.empty(len(texts), width, dtype=torch.float32, device=device)
        tokens = torch.zeros(len(texts), dtype=torch.long)
        autocast = torch.autocast(device.type, dtype=dtype, enabled=dtype not in (None, torch.float32))
        try:
            if device != home:
                self.to(device)
            self.eval()
            for chunk in _progress(chunks, show_progress_bar):
                batch = self.tokenizer([texts[i] for i in chunk], **tokenize)
                tokens[chunk] = batch["attention_mask"].sum(1)
                batch = batch.to(device)
                with autocast:
                    emb = self(**batch).sentence_embedding.float()[:, :width]
                if normalize:
                    emb = nn.functional.normalize(emb, dim=-1)
                out[torch.tensor(chunk, device=device)] = emb
        finally:
            self.train(was_training)
            if device != home:
                self.to(home)
        return out, tokens


def init_connector_layer(layer: nn.Linear, config: Causal2VecConfig, first: bool) -> None:
    """Initialise one connector Linear as `config.connector_init` says (`first`: the layer that reads the encoder)."""
    std = getattr(config.decoder, "initializer_range", 0.02)
    if config.connector_init == "isometric":
        # orthonormal columns in every layer (widths never shrink: checked by the config) make the chain an isometry
        # where the activation is linear around 0; the first layer's entries at RMS `std` keep the pre-activations
        # near there (measured with `python -m benchmarks.connector_init`:
        # docs/experiments.md#where-the-classification-points-go-the-connectors-random-start)
        nn.init.orthogonal_(layer.weight, gain=std * layer.out_features**0.5 if first else 1.0)
    else:
        nn.init.normal_(layer.weight, std=std)
    nn.init.zeros_(layer.bias)


class Causal2VecPreTrainedModel(PreTrainedModel):
    config_class = Causal2VecConfig
    base_model_prefix = "causal2vec"
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True

    def _init_weights(self, module: nn.Module) -> None:
        connector = getattr(self, "connector", None)
        layers = list(getattr(connector, "layers", ()))
        if any(module is layer for layer in layers):
            # each layer on its own: transformers visits parameter-holding modules, never the connector itself
            init_connector_layer(module, self.config, first=module is layers[0])
        elif module is getattr(connector, "norm", None):
            # C at a random decoder's embedding scale (RMS ~ initializer_range); from_parts measures a pretrained one
            nn.init.constant_(module.weight, getattr(self.config.decoder, "initializer_range", 0.02))
        else:
            super()._init_weights(module)


class Causal2VecModel(EmbedderMixin, Causal2VecPreTrainedModel):
    # Checks of input values (ids within the vocabulary, C's slot within its row) read tensors back to the host,
    # which waits for an accelerator: None runs them on CPU inputs only, True on every device, False never.
    check_input_values: bool | None = None

    def __init__(self, config: Causal2VecConfig):
        super().__init__(config)
        self.encoder = AutoModel.from_config(config.encoder)
        if getattr(self.encoder, "pooler", None) is not None:
            self.encoder.pooler = None  # unused: Causal2Vec pools the token states itself
        self.connector = Causal2VecConnector(config)
        self.decoder = AutoModel.from_config(config.decoder)  # post_init collects the parts' _no_split_modules
        self._tokenizer: Causal2VecTokenizer | None = None
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.decoder.get_input_embeddings()

    def match_contextual_scale(self) -> float | None:
        """Set the connector's RMSNorm gain to `config.contextual_scale` times the RMS of the decoder's input
        embeddings (`connector_norm="rms"`); returns that gain (None without the norm)."""
        if self.connector.norm is None:
            return None
        gain = self.config.contextual_scale * input_embedding_rms(self.decoder)
        with torch.no_grad():
            self.connector.norm.weight.fill_(gain)
        return gain

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.decoder.set_input_embeddings(value)

    def encoder_pooled(self, encoder_input_ids: torch.Tensor, encoder_attention_mask: torch.Tensor) -> torch.Tensor:
        """Encode the text with the encoder and pool it (`encoder_pooling`): what the connector reads."""
        states = self.encoder(input_ids=encoder_input_ids, attention_mask=encoder_attention_mask).last_hidden_state
        return states[:, 0] if self.config.encoder_pooling == "cls" else masked_mean(states, encoder_attention_mask)

    def contextual_token(self, encoder_input_ids: torch.Tensor, encoder_attention_mask: torch.Tensor) -> torch.Tensor:
        """Encode the text with the encoder, pool it and map it to one decoder embedding: (batch, hidden)."""
        return self.connector(self.encoder_pooled(encoder_input_ids, encoder_attention_mask))

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        encoder_input_ids: torch.Tensor | None = None,
        encoder_attention_mask: torch.Tensor | None = None,
        contextual_index: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        encoder_ids: torch.Tensor | None = None,
        encoder_mask: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> Causal2VecOutput:
        """Embed a batch made by `Causal2VecTokenizer` (any padding side). `encoder_ids` / `encoder_mask` are
        other names of `encoder_input_ids` / `encoder_attention_mask` (the tokenizer's `short_encoder_keys`)."""
        if encoder_ids is not None or encoder_mask is not None:
            if encoder_input_ids is not None or encoder_attention_mask is not None:
                raise ValueError("pass the encoder's inputs as encoder_input_ids/_attention_mask or encoder_ids/_mask")
            encoder_input_ids, encoder_attention_mask = encoder_ids, encoder_mask
        missing = [
            n
            for n, v in (
                ("input_ids", input_ids),
                ("encoder_input_ids", encoder_input_ids),
                ("contextual_index", contextual_index),
            )
            if v is None
        ]
        if missing:
            raise ValueError(f"Causal2VecModel.forward needs {', '.join(missing)}: tokenize with Causal2VecTokenizer")
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if encoder_attention_mask is None:
            encoder_attention_mask = torch.ones_like(encoder_input_ids)
        self._check_inputs(input_ids, attention_mask, encoder_input_ids, encoder_attention_mask, contextual_index)
        if input_ids.shape[0] == 0:
            return self._empty_output(input_ids)
        # rank of each real token within its row: the position id, and how C and EOS are found
        rank = attention_mask.long().cumsum(1) - 1
        real = attention_mask.bool()
        is_c = real & (rank == contextual_index.to(rank.device).view(-1, 1))
        is_eos = real & (rank == (attention_mask.sum(1, keepdim=True) - 1))
        if self._checks_values(input_ids) and not bool(is_c.any(1).all()):
            raise ValueError("contextual_index points outside a row's tokens")

        c = self.contextual_token(encoder_input_ids, encoder_attention_mask)
        embeds = self.decoder.get_input_embeddings()(input_ids)
        embeds = torch.where(is_c.unsqueeze(-1), c.unsqueeze(1).to(embeds.dtype), embeds)
        out = self.decoder(
            inputs_embeds=embeds,
            attention_mask=attention_mask,
            position_ids=rank.clamp(min=0),
            output_hidden_states=output_hidden_states,
            use_cache=False,
            return_dict=True,
        )
        hidden = out.last_hidden_state
        return Causal2VecOutput(
            sentence_embedding=self.pool_decoder(hidden, real, is_c, is_eos),
            last_hidden_state=hidden,
            contextual_token=c,
            hidden_states=out.hidden_states,
        )

    def _check_inputs(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        encoder_input_ids: torch.Tensor,
        encoder_attention_mask: torch.Tensor,
        contextual_index: torch.Tensor,
    ) -> None:
        """Shape checks, and range checks where `check_input_values` says, so that bad input fails here with its
        name, not deep inside torch (or in a device-side assert)."""
        for name, ids in (("input_ids", input_ids), ("encoder_input_ids", encoder_input_ids)):
            if ids.dim() != 2:
                raise ValueError(f"{name} must be 2-D (batch, length), got shape {tuple(ids.shape)}")
        batch = input_ids.shape[0]
        if encoder_input_ids.shape[0] != batch or contextual_index.numel() != batch:
            raise ValueError(
                f"batch sizes differ: input_ids has {batch} rows, encoder_input_ids {encoder_input_ids.shape[0]}, "
                f"contextual_index {contextual_index.numel()} values; each text needs one of each"
            )
        for name, mask, ids in (
            ("attention_mask", attention_mask, input_ids),
            ("encoder_attention_mask", encoder_attention_mask, encoder_input_ids),
        ):
            if mask.shape != ids.shape:
                raise ValueError(f"{name} has shape {tuple(mask.shape)} but its ids have {tuple(ids.shape)}")
        if not self._checks_values(input_ids):
            return
        for name, ids, part in (
            ("input_ids", input_ids, self.decoder),
            ("encoder_input_ids", encoder_input_ids, self.encoder),
        ):
            vocab = part.get_input_embeddings().weight.shape[0]
            if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= vocab):
                raise ValueError(
                    f"{name} holds ids outside [0, {vocab}) (min {int(ids.min())}, max {int(ids.max())}): "
                    "were they made by this model's tokenizer?"
                )

    def _checks_values(self, input_ids: torch.Tensor) -> bool:
        """Whether to run the checks that read input values (see `check_input_values`)."""
        return input_ids.device.type == "cpu" if self.check_input_values is None else self.check_input_values

    def _empty_output(self, input_ids: torch.Tensor) -> Causal2VecOutput:
        """The output for a batch of zero texts."""
        weight = self.decoder.get_input_embeddings().weight
        hidden = self.config.decoder.hidden_size
        return Causal2VecOutput(
            sentence_embedding=weight.new_zeros(0, self.config.embedding_dim),
            last_hidden_state=weight.new_zeros(0, input_ids.shape[1], hidden),
            contextual_token=weight.new_zeros(0, hidden),
        )

    def pool_decoder(
        self, hidden: torch.Tensor, real: torch.Tensor, is_c: torch.Tensor, is_eos: torch.Tensor
    ) -> torch.Tensor:
        """Turn the decoder's last hidden states into the text embedding, per `config.pooling`."""
        rows = torch.arange(hidden.shape[0], device=hidden.device)
        c_state = hidden[rows, is_c.int().argmax(1)]
        eos_state = hidden[rows, is_eos.int().argmax(1)]
        if self.config.pooling == "contextual_eos":
            return torch.cat([c_state, eos_state], dim=-1)
        if self.config.pooling == "eos":
            return eos_state
        if self.config.pooling == "contextual":
            return c_state
        return masked_mean(hidden, real)

    # ---- building, loading and saving -------------------------------------------------------------------

    @classmethod
    def from_parts(
        cls,
        decoder: str | os.PathLike | PreTrainedModel,
        encoder: str | os.PathLike | PreTrainedModel,
        decoder_tokenizer: Any = None,
        encoder_tokenizer: Any = None,
        decoder_kwargs: dict[str, Any] | None = None,
        **config_kwargs: Any,
    ) -> Causal2VecModel:
        """Build a new (untrained-connector) Causal2Vec model from any pretrained decoder and encoder.

        `decoder`/`encoder` are paths or loaded models (a causal LM's head is dropped); loaded models become the
        new model's parts as they are (shared, not copied; an encoder's pooler is dropped), so memory holds one
        copy of the weights. Tokenizers default to the ones stored with each part. `decoder_kwargs` go to the
        decoder's `from_pretrained` (e.g. `gguf_file`). `config_kwargs` set `Causal2VecConfig` fields. The
        tokenizer is attached as `model.tokenizer` and saved by `save_pretrained`.
        """
        decoder_kwargs = decoder_kwargs or {}
        if not isinstance(decoder, PreTrainedModel):
            decoder_tokenizer = decoder_tokenizer or AutoTokenizer.from_pretrained(decoder, **decoder_kwargs)
            decoder = AutoModel.from_pretrained(decoder, **decoder_kwargs)
        if not isinstance(encoder, PreTrainedModel):
            encoder_tokenizer = encoder_tokenizer or AutoTokenizer.from_pretrained(encoder)
            encoder = AutoModel.from_pretrained(encoder)
        if decoder_tokenizer is None or encoder_tokenizer is None:
            raise ValueError("pass decoder_tokenizer and encoder_tokenizer along with loaded models")
        decoder, encoder = decoder.base_model, encoder.base_model  # drop an LM head if any
        config = Causal2VecConfig(
            encoder=_portable_config(encoder.config), decoder=_portable_config(decoder.config), **config_kwargs
        )
        with torch.device("meta"):  # the frame only, no weights: the parts are used as they are, not copied
            model = cls(config)
        if getattr(encoder, "pooler", None) is not None:
            encoder.pooler = None  # unused, as in __init__
        model.encoder, model.decoder = encoder, decoder
        model.connector = Causal2VecConnector(config)
        model.connector.apply(model._init_weights)  # as post_init initialises it
        model.match_contextual_scale()
        model.tokenizer = build_tokenizer(config, decoder_tokenizer, encoder_tokenizer)
        return model

    @property
    def tokenizer(self) -> Causal2VecTokenizer:
        """The checkpoint's tokenizer, loaded from the model's folder on first use."""
        if self._tokenizer is None:
            path = self.config.name_or_path
            try:
                self._tokenizer = Causal2VecTokenizer.from_pretrained(path)
            except (OSError, ValueError) as err:
                raise OSError(
                    f"no Causal2Vec tokenizer could be loaded from {path!r}; set model.tokenizer = "
                    "AutoTokenizer.from_pretrained(..., trust_remote_code=True)"
                ) from err
        return self._tokenizer

    @tokenizer.setter
    def tokenizer(self, value: Causal2VecTokenizer) -> None:
        self._tokenizer = value

    @classmethod
    def from_pretrained(cls, *args: Any, **kwargs: Any) -> Any:
        """`PreTrainedModel.from_pretrained`, refusing a checkpoint whose connector weights are missing rather than
        running with freshly initialised ones (a config.json that does not match its weights)."""
        wanted = kwargs.pop("output_loading_info", False)
        model, info = super().from_pretrained(*args, output_loading_info=True, **kwargs)
        missing = sorted(k for k in info["missing_keys"] if k.startswith("connector."))
        if missing:
            raise ValueError(
                f"checkpoint {args[0] if args else ''} lacks connector weights {missing}: its config.json "
                "(connector_num_layers, connector_norm) does not match its weights"
            )
        return (model, info) if wanted else model

    def save_pretrained(self, save_directory: str | os.PathLike, *args: Any, **kwargs: Any) -> None:
        """Save weights, config and remote code, plus the tokenizer and sentence-transformers files."""
        super().save_pretrained(save_directory, *args, **kwargs)
        if self._tokenizer is not None:
            self._tokenizer.save_pretrained(save_directory)
        write_sentence_transformers_files(save_directory, self.config)
        if not (Path(save_directory) / CARD_FILE).exists():  # never replace a card someone wrote
            write_card(save_directory, self.config)


def build_tokenizer(config: Causal2VecConfig, decoder_tokenizer: Any, encoder_tokenizer: Any) -> Causal2VecTokenizer:
    """Wrap a decoder tokenizer and an encoder tokenizer into one `Causal2VecTokenizer` for `config`."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        decoder_tokenizer.save_pretrained(tmp)
        tokenizer = Causal2VecTokenizer(
            tokenizer_file=os.path.join(tmp, "tokenizer.json"),
            **_special_tokens(decoder_tokenizer),
            encoder_max_length=config.encoder_max_length,
            decoder_max_length=config.decoder_max_length,
            contextual_position=config.contextual_position,
            prompt_template=config.prompt_template,
            document_prompt=config.document_prompt,
            decoder_add_bos=config.decoder_add_bos,
            encoder_tokenizer=encoder_tokenizer,
        )
    tokenizer.padding_side = decoder_tokenizer.padding_side
    return tokenizer


def _portable_config(config: Any) -> Any:
    """A part's config without what ties it to one machine or file (local paths, GGUF quantization)."""
    fields = config.to_dict()
    for key in ("_name_or_path", "_model_name_or_path", "architectures", "quantization_config", "transformers_version"):
        fields.pop(key, None)
    return AutoConfig.for_model(**fields)


def _special_tokens(tokenizer: Any) -> dict[str, Any]:
    names = ("bos_token", "eos_token", "unk_token", "pad_token")
    tokens = {name: getattr(tokenizer, name) for name in names if getattr(tokenizer, name, None) is not None}
    if "pad_token" not in tokens:
        tokens["pad_token"] = tokens.get("eos_token")
    return tokens


def _logger_shows_info() -> bool:
    from transformers.utils import logging

    return logging.get_verbosity() <= logging.INFO


def _progress(items: list, enabled: bool):
    if not enabled:
        return items
    from transformers.utils import logging

    return logging.tqdm(items, desc="Batches")  # honours transformers' disable_progress_bar()


Causal2VecConfig.register_for_auto_class()
Causal2VecModel.register_for_auto_class("AutoModel")
Causal2VecTokenizer.register_for_auto_class("AutoTokenizer")
