"""The OpenAI-compatible embeddings API (FastAPI) over a `MicroBatcher` that calls the model's `encode`.

Routes: `POST /v1/embeddings`, `GET /v1/models`, `GET /v1/models/{id}`, `GET /health`, `GET /stats` (batch sizes
seen). Errors have OpenAI's shape, `{"error": {"message", "type", "param", "code"}}`, and the right status; an
unexpected error is logged with its traceback and answered with a generic 500 that names only an error id.
`Server` is uvicorn's server with a shutdown that lets queued requests finish (or answers them 503) in time.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import json
import logging
import reprlib
import threading
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from serve.batcher import Job, MicroBatcher, Overloaded, Unavailable

logger = logging.getLogger("serve")
REQUEST_FIELDS = ("input", "model", "encoding_format", "dimensions", "user", "prompt_name", "instruction")
ENCODING_FORMATS = ("float", "base64")
TOKEN_INPUT_REFUSED = (  # LangChain's OpenAIEmbeddings tokenizes with tiktoken and sends the ids by default
    "token-id input is not supported: this server takes text only (the model has its own two tokenizers); send "
    "strings. LangChain's OpenAIEmbeddings needs check_embedding_ctx_length=False (otherwise it sends token ids)"
)
ANSWER_S = 2.0  # after `graceful_s`, how long uvicorn waits for the 503 answers to go out before it cancels them


class _ShortRepr(reprlib.Repr):
    """Client values quoted in error messages: bounded in length and depth (a deeply nested value cannot recurse)."""

    def __init__(self) -> None:
        super().__init__()
        self.maxstring, self.maxother, self.maxlevel = 200, 200, 3


short_repr = _ShortRepr().repr


@dataclass
class Settings:
    """Server limits (all flags of `python -m serve`)."""

    served_model_name: str = "causal2vec"
    dtype: torch.dtype | None = None  # None: fp32; torch.bfloat16: bf16 autocast
    max_batch_size: int = 32  # texts per forward
    max_wait_ms: float = 5.0  # how long the worker waits for more requests to fill a batch
    max_queue: int = 1024  # texts waiting; more gets 503
    max_inputs: int = 2048  # texts per request (OpenAI's limit)
    max_body_bytes: int = 8 * 1024 * 1024
    graceful_s: float = 5.0  # on shutdown, queued and running requests get this long to finish, then a 503

    def __post_init__(self) -> None:
        if self.max_inputs < 1 or self.max_body_bytes < 1:
            raise ValueError(f"max_inputs and max_body_bytes must be >= 1: {self.max_inputs}, {self.max_body_bytes}")
        if self.graceful_s < 0:
            raise ValueError(f"graceful_s must be >= 0, got {self.graceful_s}")


class APIError(Exception):
    """An error answered in OpenAI's shape."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code

    def response(self) -> JSONResponse:
        kind = "invalid_request_error" if self.status < 500 else "server_error"
        body = {"error": {"message": self.message, "type": kind, "param": self.param, "code": self.code}}
        headers = {"Retry-After": "1"} if self.status == 503 else None
        return JSONResponse(body, status_code=self.status, headers=headers)


def internal_error(what: str, err: BaseException) -> APIError:
    """Log `err` with its traceback under a fresh error id; a 500 that names only that id (nothing internal)."""
    error_id = uuid.uuid4().hex[:12]
    logger.error("%s (error id %s)", what, error_id, exc_info=err)
    message = f"The server had an error while processing your request (error id {error_id}; see the server log)."
    return APIError(500, message, None, "internal_error")


@dataclass
class Parsed:
    """An embeddings request, checked: its texts, decoder prompt (None: none), encoding format, `dimensions`."""

    texts: list[str]
    prompt: str | None
    encoding_format: str
    dimensions: int | None


@dataclass
class Embedder:
    """Runs in the batcher's worker thread: one `model.encode_with_token_counts` call (`encode`, whose batches also
    give the usage counts: each text is tokenized once) per distinct prompt among the merged jobs.
    A prompt group that fails gets the error alone: a 400 for the model's `TypeError`/`ValueError` (e.g. a prompt
    longer than decoder_max_length), a logged generic 500 for anything else; the other groups are answered."""

    model: Any
    dtype: torch.dtype | None
    batch_size: int
    batch_sizes: collections.Counter = field(default_factory=collections.Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)  # batch_sizes: worker vs event loop

    def stats(self) -> dict[str, int]:
        """A snapshot of the forward batch sizes seen, `{"size": count}`, safe while the worker adds to them."""
        with self._lock:
            sizes = sorted(self.batch_sizes.items())
        return {str(k): v for k, v in sizes}

    def count(self, n_texts: int) -> None:
        """Record the forward batch sizes `encode` runs for `n_texts` texts."""
        with self._lock:
            self.batch_sizes.update(min(self.batch_size, n_texts - s) for s in range(0, n_texts, self.batch_size))

    def __call__(self, jobs: list[Job]) -> list[Any]:
        groups: dict[str | None, list[int]] = {}
        for i, job in enumerate(jobs):
            groups.setdefault(job.prompt, []).append(i)
        results: list[Any] = [None] * len(jobs)
        for prompt, members in groups.items():
            texts = [t for i in members for t in jobs[i].texts]
            try:  # a failing prompt group fails its own requests only
                vectors, tokens = self.model.encode_with_token_counts(
                    texts, prompt=prompt, batch_size=self.batch_size, dtype=self.dtype
                )  # one tokenization: the forward's batches also give the usage counts
            except (TypeError, ValueError) as err:
                error = APIError(400, str(err), "instruction" if prompt else "input")
            except Exception as err:
                error = internal_error(f"embedding {len(texts)} texts failed", err)
            else:
                error = None
            if error is not None:
                for i in members:
                    results[i] = error
                continue
            self.count(len(texts))
            start = 0
            for i in members:
                end = start + len(jobs[i].texts)
                results[i] = (vectors[start:end], sum(tokens[start:end]))
                start = end
        return results


def parse_request(body: dict[str, Any], settings: Settings, config: Any) -> Parsed:
    """Check an embeddings request; return what it asks for or raise `APIError`."""
    unknown = [k for k in body if k not in REQUEST_FIELDS]
    if unknown:
        raise APIError(400, f"Unrecognized request argument supplied: {unknown[0]}", unknown[0], "unknown_parameter")
    if "model" not in body:
        raise APIError(400, "you must provide a model parameter", "model", "missing_parameter")
    if body["model"] != settings.served_model_name:
        asked, served = short_repr(body["model"]), settings.served_model_name
        message = f"The model {asked} does not exist; this server serves {served!r}"
        raise APIError(404, message, "model", "model_not_found")
    # a request larger than the whole queue could never be admitted: a 400, not an endless 503
    texts = parse_input(body.get("input"), min(settings.max_inputs, settings.max_queue))
    fmt = body.get("encoding_format") or "float"
    if fmt not in ENCODING_FORMATS:
        message = f"encoding_format must be one of {', '.join(ENCODING_FORMATS)}, got {short_repr(fmt)}"
        raise APIError(400, message, "encoding_format")
    dims = parse_dimensions(body.get("dimensions"), config.embedding_dim)
    name, instruction = body.get("prompt_name"), body.get("instruction")
    if name is not None and instruction is not None:
        raise APIError(400, "pass prompt_name or instruction, not both", "instruction")
    if instruction is not None:
        if not isinstance(instruction, str) or not instruction.strip():
            raise APIError(400, "instruction must be a non-empty string", "instruction")
        return Parsed(texts, config.query_prompt(instruction), fmt, dims)
    prompts = {"query": config.query_prompt(), "document": config.document_prompt}
    if name is not None and (not isinstance(name, str) or name not in prompts):
        raise APIError(400, f"prompt_name must be one of {', '.join(prompts)}, got {short_repr(name)}", "prompt_name")
    return Parsed(texts, prompts[name] if name else None, fmt, dims)


def parse_dimensions(value: Any, full: int) -> int | None:
    """`dimensions` as OpenAI takes it: absent (None) or an integer from 1 to the model's embedding size `full`."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= full:
        message = (
            f"dimensions must be an integer from 1 to {full} (this model's embedding size), got {short_repr(value)}"
        )
        raise APIError(400, message, "dimensions", "invalid_value")
    return value


def parse_input(value: Any, max_inputs: int) -> list[str]:
    """`input` as a list of strings: one string or a non-empty list of them; token ids are refused."""
    if value is None:
        raise APIError(400, "you must provide an input parameter", "input", "missing_parameter")
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list):
        raise APIError(400, f"input must be a string or a list of strings, got {type(value).__name__}", "input")
    if not value:
        raise APIError(400, "input must not be an empty list", "input")
    if len(value) > max_inputs:
        raise APIError(
            400, f"input holds {len(value)} texts; at most {max_inputs} per request", "input", "too_many_inputs"
        )
    if all(isinstance(v, int) and not isinstance(v, bool) for v in value) or all(isinstance(v, list) for v in value):
        raise APIError(400, TOKEN_INPUT_REFUSED, "input", "token_input_not_supported")
    for i, text in enumerate(value):
        if not isinstance(text, str):
            raise APIError(400, f"input[{i}] must be a string, got {type(text).__name__}", "input")
    return value


async def read_body(request: Request, limit: int) -> dict[str, Any]:
    """The JSON object of the request, read at most `limit` bytes far (413 beyond)."""
    too_big = APIError(413, f"the request body is larger than {limit} bytes", None, "request_too_large")
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise too_big
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_big
        chunks.append(chunk)
    try:
        body = json.loads(b"".join(chunks))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise APIError(400, f"the request body is not valid JSON ({err})") from None
    except RecursionError:
        raise APIError(400, "the request body is nested too deeply", None, "nested_too_deeply") from None
    if not isinstance(body, dict):
        raise APIError(400, f"the request body must be a JSON object, got {type(body).__name__}")
    return body


def shorten(vectors: np.ndarray, dims: int | None) -> np.ndarray:
    """OpenAI's `dimensions`: the first `dims` dimensions, renormalised to unit length (None: as they are)."""
    if dims is None:
        return vectors
    prefix = vectors[:, :dims]
    return prefix / np.maximum(np.linalg.norm(prefix, axis=1, keepdims=True), 1e-12)  # torch's normalize's eps


def encode_vector(vector: np.ndarray, fmt: str) -> list[float] | str:
    if fmt == "base64":  # what the openai client asks for by default: little-endian float32
        return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")
    return vector.tolist()


def create_app(model: Any, settings: Settings) -> FastAPI:
    """The app serving `model` (a loaded Causal2Vec model, moved to eval mode)."""
    model.eval()
    embedder = Embedder(model, settings.dtype, settings.max_batch_size)
    batcher = MicroBatcher(embedder, settings.max_batch_size, settings.max_wait_ms, settings.max_queue)
    created = int(time.time())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await batcher.start()
        yield
        await batcher.stop(settings.graceful_s)  # at once when `Server.shutdown` has stopped it already

    app = FastAPI(title="Causal2Vec embeddings", lifespan=lifespan)
    app.state.batcher, app.state.embedder, app.state.settings = batcher, embedder, settings

    @app.exception_handler(APIError)
    async def api_error(request: Request, err: APIError) -> JSONResponse:
        return err.response()

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, err: HTTPException) -> JSONResponse:
        return APIError(err.status_code, str(err.detail)).response()

    @app.exception_handler(Exception)
    async def unexpected_error(request: Request, err: Exception) -> JSONResponse:
        return internal_error(f"{request.method} {request.url.path} failed", err).response()

    @app.post("/v1/embeddings")
    async def embeddings(request: Request) -> JSONResponse:
        body = await read_body(request, settings.max_body_bytes)
        asked = parse_request(body, settings, model.config)
        try:
            result = await batcher.submit(asked.texts, asked.prompt)
        except Overloaded as err:
            raise APIError(503, str(err), None, "server_overloaded") from None
        except Unavailable as err:
            raise APIError(503, str(err), None, "server_unavailable") from None
        except Exception as err:
            raise internal_error("embedding failed", err) from None
        if isinstance(result, APIError):
            raise result
        vectors, tokens = result
        vectors = shorten(vectors, asked.dimensions)
        data = [
            {"object": "embedding", "index": i, "embedding": encode_vector(v, asked.encoding_format)}
            for i, v in enumerate(vectors)
        ]
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        return JSONResponse({"object": "list", "data": data, "model": settings.served_model_name, "usage": usage})

    def model_card() -> dict[str, Any]:
        return {"id": settings.served_model_name, "object": "model", "created": created, "owned_by": "causal2vec"}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [model_card()]}

    @app.get("/v1/models/{name:path}")
    async def one_model(name: str) -> dict[str, Any]:
        if name != settings.served_model_name:
            raise APIError(404, f"The model {name!r} does not exist", "model", "model_not_found")
        return model_card()

    @app.get("/health")
    async def health() -> JSONResponse:
        """200 while the worker runs; 503 once it has died (the process needs a restart) or shutdown has begun."""
        if batcher.healthy:
            return JSONResponse({"status": "ok", "queued_texts": batcher.queued_texts})
        reason = batcher.failure or ("the server is shutting down" if batcher.closing else "not started")
        return JSONResponse({"status": "unavailable", "reason": reason}, status_code=503)

    @app.get("/stats")
    async def stats() -> dict[str, Any]:
        sizes = embedder.stats()
        return {"batches": batcher.batches, "forward_batch_sizes": sizes, "queued_texts": batcher.queued_texts}

    return app


class Server(uvicorn.Server):
    """uvicorn's server for an app of `create_app`, whose shutdown also stops the app's batcher at once: queued and
    running requests get `Settings.graceful_s` to finish, then a 503, while uvicorn (stopping to accept connections)
    waits `ANSWER_S` longer for those answers to go out. Without this, uvicorn would cancel the requests still
    waiting after its timeout, and its clients would get a bare 500 or a dropped connection."""

    def __init__(self, config: uvicorn.Config, batcher: MicroBatcher, graceful_s: float) -> None:
        super().__init__(config)
        self.batcher, self.graceful_s = batcher, graceful_s

    async def shutdown(self, sockets: list[Any] | None = None) -> None:
        draining = asyncio.create_task(self.batcher.stop(self.graceful_s))
        try:
            await super().shutdown(sockets)
        finally:
            await draining


def make_server(app: FastAPI, **config: Any) -> Server:
    """A `Server` for `app` (from `create_app`); `config`: uvicorn.Config's arguments (host, port, log_level...)."""
    settings: Settings = app.state.settings
    config["timeout_graceful_shutdown"] = settings.graceful_s + ANSWER_S
    return Server(uvicorn.Config(app, **config), app.state.batcher, settings.graceful_s)
