"""The OpenAI-compatible server, over real HTTP on 127.0.0.1, called with the real `openai` client."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import numpy as np
import openai
import pytest
import uvicorn
from conftest import TEXTS

from serve.app import Settings, create_app

NAME = "tiny-c2v"


@contextmanager
def running(model: Any, **limits: Any) -> Iterator[tuple[str, Any]]:
    """Serve `model` with uvicorn in a thread on a free 127.0.0.1 port; yields (base URL, app)."""
    app = create_app(model, Settings(served_model_name=NAME, **limits))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}", app
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


def client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key="not-needed", max_retries=0, timeout=60)


def raw(url: str, path: str, body: bytes | None = None) -> tuple[int, dict[str, Any]]:
    """POST `body` (GET when None) with urllib; (status, JSON answer)."""
    request = urllib.request.Request(url + path, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


@pytest.fixture(scope="module")
def tiny_model():
    from train.build import build_random

    return build_random(document_prompt="Passage: ").eval()


@pytest.fixture(scope="module")
def server(tiny_model):
    with running(tiny_model, max_inputs=8, max_body_bytes=20_000) as (url, app):
        yield url, app


def vectors(response: Any) -> np.ndarray:
    assert [d.index for d in response.data] == list(range(len(response.data)))
    return np.array([d.embedding for d in response.data])


def test_openai_client_gets_what_encode_gives(server, tiny_model, one_thread):
    url, _ = server
    api = client(url)
    expected = tiny_model.encode(TEXTS)
    as_float = api.embeddings.create(model=NAME, input=TEXTS, encoding_format="float", user="ignored")
    np.testing.assert_allclose(vectors(as_float), expected, atol=1e-5)
    as_base64 = api.embeddings.create(model=NAME, input=TEXTS)  # the client's default: base64, decoded by it
    np.testing.assert_allclose(vectors(as_base64), expected, atol=1e-5)
    single = api.embeddings.create(model=NAME, input=TEXTS[2], dimensions=tiny_model.config.embedding_dim)
    np.testing.assert_allclose(vectors(single), expected[2:3], atol=1e-5)
    lengths = [len(ids) for ids in tiny_model.tokenizer(TEXTS, padding=False)["input_ids"]]
    assert as_float.usage.prompt_tokens == as_float.usage.total_tokens == sum(lengths)
    assert as_float.model == NAME

    query = api.embeddings.create(model=NAME, input=TEXTS, extra_body={"prompt_name": "query"})
    np.testing.assert_allclose(vectors(query), tiny_model.encode(TEXTS, prompt_name="query"), atol=1e-5)
    document = api.embeddings.create(model=NAME, input=TEXTS, extra_body={"prompt_name": "document"})
    np.testing.assert_allclose(vectors(document), tiny_model.encode(TEXTS, prompt_name="document"), atol=1e-5)
    instruction = "Given a claim, retrieve evidence"
    claim = api.embeddings.create(model=NAME, input=TEXTS, extra_body={"instruction": instruction})
    prompt = tiny_model.config.query_prompt(instruction)
    np.testing.assert_allclose(vectors(claim), tiny_model.encode(TEXTS, prompt=prompt), atol=1e-5)
    assert claim.usage.prompt_tokens > as_float.usage.prompt_tokens

    assert [m.id for m in api.models.list()] == [NAME]
    assert api.models.retrieve(NAME).id == NAME
    assert raw(url, "/health") == (200, {"status": "ok", "queued_texts": 0})


BAD = [  # (request body, status, words of the message, param)
    ({"model": NAME, "input": []}, 400, "must not be an empty list", "input"),
    ({"model": NAME, "input": ["fine", 3]}, 400, "input[1] must be a string, got int", "input"),
    ({"model": NAME, "input": None}, 400, "must provide an input", "input"),
    ({"model": NAME, "input": {"text": "a"}}, 400, "must be a string or a list of strings", "input"),
    ({"model": NAME, "input": [101, 2023, 102]}, 400, "token-id input is not supported", "input"),
    ({"model": NAME, "input": [[101, 2023], [102]]}, 400, "token-id input is not supported", "input"),
    ({"model": NAME, "input": ["a"] * 9}, 400, "holds 9 texts; at most 8", "input"),
    ({"model": NAME, "input": "a", "dimensions": 7}, 400, "cannot return dimensions=7", "dimensions"),
    ({"model": NAME, "input": "a", "encoding_format": "int8"}, 400, "encoding_format must be one of", None),
    ({"model": NAME, "input": "a", "prompt_name": "passage"}, 400, "prompt_name must be one of", "prompt_name"),
    ({"model": NAME, "input": "a", "prompt_name": "query", "instruction": "x"}, 400, "not both", "instruction"),
    ({"model": NAME, "input": "a", "instruction": "word " * 600}, 400, "too long for decoder_max_length", None),
    ({"model": NAME, "input": "a", "temperature": 1}, 400, "Unrecognized request argument supplied: temp", None),
    ({"model": "text-embedding-3-small", "input": "a"}, 404, "does not exist", "model"),
    ({"input": "a"}, 400, "must provide a model", "model"),
    ({"model": NAME, "input": "x" * 30_000}, 413, "larger than 20000 bytes", None),
    (b"{not json", 400, "not valid JSON", None),
    (b"[1, 2]", 400, "must be a JSON object", None),
]


def test_bad_input_gets_openai_errors_while_good_requests_are_served(server, tiny_model, one_thread):
    url, _ = server
    expected = tiny_model.encode(TEXTS)

    def send(body: dict[str, Any] | bytes) -> tuple[int, dict[str, Any]]:
        return raw(url, "/v1/embeddings", body if isinstance(body, bytes) else json.dumps(body).encode())

    with ThreadPoolExecutor(8) as pool:
        good = [pool.submit(client(url).embeddings.create, model=NAME, input=TEXTS) for _ in range(3)]
        answers = list(pool.map(send, [body for body, *_ in BAD]))
        for future in good:
            np.testing.assert_allclose(vectors(future.result()), expected, atol=1e-5)
    for (body, status, words, param), (got_status, answer) in zip(BAD, answers, strict=True):
        error = answer["error"]
        assert (got_status, set(error)) == (status, {"message", "type", "param", "code"}), (body, answer)
        assert words in error["message"], (body, error)
        assert error["type"] == "invalid_request_error"
        if param:
            assert error["param"] == param, (body, error)
    assert raw(url, "/v2/nothing")[1]["error"]["message"] == "Not Found"

    with pytest.raises(openai.BadRequestError) as err:  # what an openai user sees
        client(url).embeddings.create(model=NAME, input=[])
    assert err.value.status_code == 400 and "empty list" in err.value.message
    with pytest.raises(openai.NotFoundError):
        client(url).embeddings.create(model="other", input="a")
    np.testing.assert_allclose(vectors(client(url).embeddings.create(model=NAME, input=TEXTS)), expected, atol=1e-5)


def test_requests_that_arrive_together_are_batched_and_a_full_queue_gets_503(tiny_model, one_thread):
    with running(tiny_model, max_batch_size=4, max_queue=6, max_wait_ms=50) as (url, app):
        batcher, embed = app.state.batcher, app.state.batcher.embed
        entered, release = threading.Event(), threading.Event()

        def held(jobs):  # the real embedder, held until the test has queued what it needs
            entered.set()
            release.wait(60)
            return embed(jobs)

        batcher.embed = held
        api = client(url)
        with ThreadPoolExecutor(8) as pool:
            first = pool.submit(api.embeddings.create, model=NAME, input=TEXTS[:2])
            assert entered.wait(30)  # the worker holds the first request
            singles = [pool.submit(api.embeddings.create, model=NAME, input=t) for t in TEXTS]
            deadline = time.monotonic() + 30
            while batcher.queued_texts < len(TEXTS):
                assert time.monotonic() < deadline
                time.sleep(0.01)
            with pytest.raises(openai.APIStatusError) as err:  # 5 queued + 2 > max_queue=6
                api.embeddings.create(model=NAME, input=TEXTS[:2])
            assert err.value.status_code == 503 and "busy" in err.value.message
            assert err.value.response.headers["retry-after"] == "1"
            release.set()
            np.testing.assert_allclose(vectors(first.result()), tiny_model.encode(TEXTS[:2]), atol=1e-5)
            got = np.concatenate([vectors(f.result()) for f in singles])
        np.testing.assert_allclose(got, tiny_model.encode(TEXTS), atol=1e-5)
        stats = raw(url, "/stats")[1]
        # the 5 queued singles ran as batches of at most 4 texts: 4 + 1, after the held batch of 2
        assert stats["forward_batch_sizes"] == {"1": 1, "2": 1, "4": 1}, stats
        assert stats["queued_texts"] == 0
