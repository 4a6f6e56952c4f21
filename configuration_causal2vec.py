"""Configuration of a Causal2Vec embedding model (arXiv 2507.23386).

One `config.json` describes the whole model: the BERT-style pre-encoder, the MLP connector that maps
the pooled encoder output to one *Contextual token*, and the causal decoder that reads it.
"""

from __future__ import annotations

import re
from typing import ClassVar, Literal, get_args

from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec

EncoderPooling = Literal["mean", "cls"]
ContextualPosition = Literal["before_instruction", "before_text"]
Pooling = Literal["contextual_eos", "eos", "contextual", "mean"]
ConnectorActivation = Literal["gelu", "relu", "silu", "tanh"]
ConnectorNorm = Literal["rms", "none"]
ConnectorInit = Literal["normal", "isometric"]
ENCODER_POOLINGS = get_args(EncoderPooling)
CONTEXTUAL_POSITIONS = get_args(ContextualPosition)
POOLINGS = get_args(Pooling)
CONNECTOR_ACTIVATIONS = get_args(ConnectorActivation)
CONNECTOR_NORMS = get_args(ConnectorNorm)
CONNECTOR_INITS = get_args(ConnectorInit)
# activations with a linear regime around 0 (slope > 0 there), where an isometric connector starts
SMOOTH_ACTIVATIONS = ("gelu", "silu", "tanh")
# encoders whose position ids are offset by padding_idx + 1 (roberta-style): fewer usable positions
# what a saved config.json that lacks these fields meant: it was written before they existed
LEGACY_DEFAULTS = {"connector_norm": "none", "decoder_add_bos": False, "contextual_scale": 1.0}
PADDING_OFFSET_POSITIONS = frozenset(
    {
        "camembert",
        "data2vec-text",
        "ibert",
        "longformer",
        "luke",
        "mpnet",
        "roberta",
        "roberta-prelayernorm",
        "xlm-roberta",
        "xlm-roberta-xl",
        "xmod",
    }
)


# The fields only the contextual-token path reads (connector, C's place, pooling over C/EOS): the baselines of
# `causal2vec.baselines`, which share the decoder and encoder but not the connector, embed the same whatever they are.
CONTEXTUAL_TOKEN_FIELDS = (
    "connector_num_layers",
    "connector_hidden_size",
    "connector_output_size",
    "connector_activation",
    "connector_norm",
    "connector_init",
    "contextual_scale",
    "encoder_pooling",
    "contextual_position",
    "pooling",
)


class Causal2VecConfig(PreTrainedConfig):
    r"""
    Args:
        encoder (`dict` or `PreTrainedConfig`):
            Config of the lightweight bidirectional encoder (any `AutoModel` encoder: bert, roberta, ...).
        decoder (`dict` or `PreTrainedConfig`):
            Config of the causal LM backbone (any `AutoModel` decoder: llama, qwen2, gemma3, gpt2, ...).
        connector_num_layers (`int`, defaults to 2):
            Linear layers in the MLP connector (1 = a single projection).
        connector_hidden_size (`int`, *optional*):
            Width of the connector's hidden layers; defaults to the decoder hidden size.
        connector_output_size (`int`, *optional*):
            Output width of the connector. It must equal the decoder hidden size: the Contextual token is
            an input embedding of the decoder. Left unset it is taken from the decoder.
        connector_activation (`str`, defaults to `"gelu"`): one of `gelu`, `relu`, `silu`, `tanh`.
        connector_norm (`str`, defaults to `"rms"`):
            `rms` ends the connector with an RMSNorm whose gain starts at the root-mean-square of the decoder's
            input embeddings (measured when the model is built from pretrained parts), so that C enters the
            decoder at the scale of a real token; `none` leaves the MLP's output as it is (for SmolLM2 an
            untrained connector's output is smaller than a token embedding: docs/configuration.md).
        connector_init (`str`, defaults to `"normal"`):
            How a new connector's Linear layers start. `normal`: weights ~ N(0, decoder initializer_range), biases 0.
            `isometric`: the chain maps the pooled encoder vector onto a random subspace keeping all its angles
            (orthonormal columns in every layer, the first one's entries at the same scale as `normal`; biases 0),
            so C's cosines start equal to the encoder's, where a normal(0.02) MLP loses some of the encoder's TREC
            accuracy (measured: docs/experiments.md#where-the-classification-points-go-the-connectors-random-start).
            Needs widths that never shrink from the encoder's hidden size and a `gelu`, `silu` or `tanh` activation.
            Used when a connector is created; a saved checkpoint keeps its weights.
        contextual_scale (`float`, defaults to 256.0):
            With `connector_norm="rms"`, the RMSNorm gain starts at `contextual_scale` times the RMS of the
            decoder's input embeddings; at 1 C enters at a real token's scale. At 256 C dominates its own residual
            stream, so its last hidden state keeps the encoder's information through the decoder (pre-norm layers
            see C's direction, not its size). Used when the model is built from parts; a saved checkpoint keeps its
            trained gain. Measured: docs/experiments.md#the-contextual-tokens-scale-contextual_scale.
        encoder_pooling (`str`, defaults to `"mean"`):
            How the encoder's token states become one vector: `mean` (masked mean, what sentence encoders
            such as all-MiniLM-L6-v2 were trained with) or `cls` (the first token's state).
        contextual_position (`str`, defaults to `"before_instruction"`):
            Where the Contextual token C sits in the decoder input. `before_instruction`:
            `[BOS] C instruction text EOS`, so that the instruction tokens also see the summary of the text
            (the paper prepends C to the whole LLM input). `before_text`: `[BOS] instruction C text EOS`
            (measured on the default recipe: docs/experiments.md#what-the-runs-show, "C before the instruction or
            before the text").
        pooling (`str`, defaults to `"contextual_eos"`):
            `contextual_eos` concatenates the last hidden states of C and EOS (the paper's method); `eos`,
            `contextual` and `mean` (over all real decoder tokens) are ablations. `contextual` reads none of the
            decoder's text (C precedes it under the causal mask): the encoder through a decoder-sized head.
        decoder_add_bos (`bool`, defaults to `True`):
            Put the decoder's BOS token (its EOS token where it has no BOS) first in every decoder row, in front
            of C, even when the decoder's own tokenizer adds none (SmolLM2, Qwen, GPT-2). Without it C sits at
            position 0, the attention-sink slot of causal LMs: it then draws much of the attention, gets a massive
            activation and a final state that hardly depends on the text (measured: tokenization_notes.md, "Why a
            BOS before C"; trained: docs/experiments.md#what-the-runs-show, "BOS before C").
        encoder_max_length (`int`, defaults to 512): encoder tokens per text, special tokens included.
        decoder_max_length (`int`, defaults to 512): decoder tokens per text, BOS, C and EOS included.
        prompt_template (`str`): How an instruction becomes a query prompt; must contain `{}` once.
            A text that starts with a prompt of this form has the prompt routed to the decoder only.
        query_instruction (`str`): Default instruction for queries (`encode(..., prompt_name="query")`).
        document_prompt (`str`, defaults to `""`):
            Prompt for documents (`encode(..., prompt_name="document")` and sentence-transformers'
            `prompt_name="document"`); empty, as the paper embeds documents without an instruction. It goes to
            the decoder only; a text that starts with it has it split off like a template prompt.
    """

    model_type: ClassVar[str] = "causal2vec"
    sub_configs_defaults: ClassVar[dict] = {
        "encoder": SubConfigSpec(config_class=AutoConfig, model_type="bert"),
        "decoder": SubConfigSpec(config_class=AutoConfig, model_type="llama"),
    }

    encoder: PreTrainedConfig | dict | None = None
    decoder: PreTrainedConfig | dict | None = None
    connector_num_layers: int = 2
    connector_hidden_size: int | None = None
    connector_output_size: int | None = None
    connector_activation: ConnectorActivation = "gelu"
    connector_norm: ConnectorNorm = "rms"
    connector_init: ConnectorInit = "normal"
    contextual_scale: float = 256.0
    encoder_pooling: EncoderPooling = "mean"
    contextual_position: ContextualPosition = "before_instruction"
    pooling: Pooling = "contextual_eos"
    decoder_add_bos: bool = True
    encoder_max_length: int = 512
    decoder_max_length: int = 512
    prompt_template: str = "Instruct: {}\nQuery: "
    query_instruction: str = "Given a web search query, retrieve relevant passages that answer the query"
    document_prompt: str = ""

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        # checked here, not by transformers' `@strict`: that lives in huggingface_hub, which remote code may not import
        for name, allowed in (
            ("encoder_pooling", ENCODER_POOLINGS),
            ("contextual_position", CONTEXTUAL_POSITIONS),
            ("pooling", POOLINGS),
            ("connector_activation", CONNECTOR_ACTIVATIONS),
            ("connector_norm", CONNECTOR_NORMS),
            ("connector_init", CONNECTOR_INITS),
        ):
            self._check(name, allowed)
        hidden = self.decoder.hidden_size
        if self.connector_output_size is None:
            self.connector_output_size = hidden
        if self.connector_output_size != hidden:
            raise ValueError(
                f"connector_output_size={self.connector_output_size} but the decoder hidden size is {hidden}: "
                "the Contextual token is a decoder input embedding, so they must be equal"
            )
        if self.connector_hidden_size is None:
            self.connector_hidden_size = hidden
        if not self.contextual_scale > 0:
            raise ValueError(f"contextual_scale must be > 0, got {self.contextual_scale}")
        if self.connector_num_layers < 1:
            raise ValueError(f"connector_num_layers must be >= 1, got {self.connector_num_layers}")
        if self.connector_init == "isometric":
            widths = [self.encoder.hidden_size]
            widths += [self.connector_hidden_size] * (self.connector_num_layers - 1) + [self.connector_output_size]
            if widths != sorted(widths):
                raise ValueError(
                    f"connector_init='isometric' needs connector widths that never shrink, got {widths} (encoder, "
                    "hidden..., output): use connector_init='normal'"
                )
            if self.connector_num_layers > 1 and self.connector_activation not in SMOOTH_ACTIVATIONS:
                raise ValueError(
                    "connector_init='isometric' needs an activation linear around 0 "
                    f"({', '.join(SMOOTH_ACTIVATIONS)}), got {self.connector_activation!r}"
                )
        if self.encoder_max_length < 3 or self.decoder_max_length < 4:
            raise ValueError(
                "encoder_max_length must be >= 3 and decoder_max_length >= 4 (room for special tokens, C, EOS "
                f"and one text token), got {self.encoder_max_length} and {self.decoder_max_length}"
            )
        self._check_positions("encoder", self.encoder, self.encoder_max_length)
        self._check_positions("decoder", self.decoder, self.decoder_max_length)
        if self.prompt_template.count("{}") != 1:
            raise ValueError(f"prompt_template must contain '{{}}' exactly once, got {self.prompt_template!r}")

    @classmethod
    def from_dict(cls, config_dict: dict, **kwargs):
        # a config.json saved before these fields existed keeps the layout it was trained with
        legacy = {k: v for k, v in LEGACY_DEFAULTS.items() if k not in config_dict and k not in kwargs}
        return super().from_dict({**config_dict, **legacy}, **kwargs)

    def _check(self, name: str, allowed: tuple[str, ...]) -> None:
        value = getattr(self, name)
        if value not in allowed:
            raise ValueError(f"Unknown {name} {value!r}; expected one of {', '.join(allowed)}")

    @staticmethod
    def _check_positions(side: str, config: PreTrainedConfig, max_length: int) -> None:
        """`{side}_max_length` must fit the part's position embeddings (where it has a `max_position_embeddings`)."""
        limit = getattr(config, "max_position_embeddings", None)
        if not isinstance(limit, int):
            return
        note = ""
        if config.model_type in PADDING_OFFSET_POSITIONS:
            offset = (config.pad_token_id or 0) + 1
            limit -= offset
            note = f" (max_position_embeddings - {offset}: {config.model_type} position ids start after padding_idx)"
        if max_length > limit:
            raise ValueError(
                f"{side}_max_length={max_length} is more than the {config.model_type} {side} can take: {limit} "
                f"positions{note}; lower {side}_max_length"
            )

    @property
    def embedding_dim(self) -> int:
        """Size of the text embedding `pooling` produces."""
        hidden = self.decoder.hidden_size
        return 2 * hidden if self.pooling == "contextual_eos" else hidden

    @property
    def projection_dim(self) -> int:
        """Alias of `embedding_dim`: what sentence-transformers reads as a model's output size."""
        return self.embedding_dim

    def query_prompt(self, instruction: str | None = None) -> str:
        """The prompt string for a query with this instruction (default: `query_instruction`)."""
        return self.prompt_template.format(instruction or self.query_instruction)


def split_prompt(text: str, template: str, document_prompt: str = "") -> tuple[str, str]:
    """Split `text` into (prompt, body) when it starts with a prompt made from `template` (or `document_prompt`).

    Sentence-transformers prepends prompts to the text; this recovers the prompt so that it goes to the decoder
    only, as `model.encode(..., prompt=...)` does. Texts without such a prefix return `("", text)`.
    """
    if document_prompt and text.startswith(document_prompt):
        return document_prompt, text[len(document_prompt) :]
    head, tail = template.split("{}")
    match = re.match(re.escape(head) + r"(.*?)" + re.escape(tail), text, flags=re.DOTALL) if head or tail else None
    if match is None or not match.group(1):
        return "", text
    return text[: match.end()], text[match.end() :]
