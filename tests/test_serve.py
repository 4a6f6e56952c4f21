"""The OpenAI-compatible server, over real HTTP on 127.0.0.1, called with the real `openai` client."""

from __future__ import annotations

import json
import socket
import sys
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
from conftest import TEXTS

from serve.app import Settings, create_app, make_server

NAME = "tiny-c2v"


@contextmanager
def running(model: Any, **limits: Any) -> Iterator[tuple[str, Any]]:
    """Serve `model` as `python -m serve` does (`make_server`) in a thread on a free 127.0.0.1 port; yields (base
    URL, app). `app.state.server` and `app.state.thread` are the uvicorn server and its thread."""
    app = create_app(model, Settings(served_model_name=NAME, **limits))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = make_server(app, log_level="warning", lifespan="on")
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    app.state.server, app.state.thread = server, thread
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
    from causal2vec.assemble import build_random

    return build_random(document_prompt="Passage: ").eval()


@pytest.fixture(scope="module")
def server(tiny_model):
    with running(tiny_model, max_inputs=8, max_body_bytes=20_000) as (url, app):
        yield url, app


def post(url: str, body: dict[str, Any] | bytes) -> tuple[int, dict[str, Any]]:
    """POST an embeddings request body (a dict as JSON, or raw bytes); (status, JSON answer)."""
    return raw(url, "/v1/embeddings", body if isinstance(body, bytes) else json.dumps(body).encode())


class Held:
    """Takes the place of a batcher's `embed`: each call records its jobs' prompts and texts, then waits for `release`
    (the first call also sets `entered`) and runs `then` on the jobs (by default the real embedder)."""

    def __init__(self, batcher: Any, then: Any = None) -> None:
        self.real = batcher.embed
        self.then = then or self.real
        self.entered, self.release = threading.Event(), threading.Event()
        self.batches: list[list[str | None]] = []
        self.texts: list[list[str]] = []
        batcher.embed = self

    def __call__(self, jobs: list[Any]) -> list[Any]:
        self.batches.append([job.prompt for job in jobs])
        self.texts.append([t for job in jobs for t in job.texts])
        self.entered.set()
        self.release.wait(60)
        return self.then(jobs)


def wait_until(condition: Any, what: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.01)


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
    single = api.embeddings.create(model=NAME, input=TEXTS[2])
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


def unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_dimensions_gives_the_renormalised_prefix_and_refuses_what_the_model_cannot_give(
    server, tiny_model, one_thread
):
    """OpenAI's `dimensions`: every value from 1 to the embedding size is the prefix of `encode`'s vector at unit
    length (half of it: the Contextual token's state alone); 0, size + 1, non-integers and booleans get a 400."""
    url, _ = server
    api = client(url)
    full = tiny_model.config.embedding_dim
    expected = tiny_model.encode(TEXTS)
    half = api.embeddings.create(model=NAME, input=TEXTS, dimensions=full // 2)  # base64, as the client sends
    np.testing.assert_allclose(vectors(half), unit(expected[:, : full // 2]), atol=1e-6)
    as_float = api.embeddings.create(model=NAME, input=TEXTS, dimensions=full, encoding_format="float")
    np.testing.assert_allclose(vectors(as_float), unit(expected), atol=1e-6)
    for k in range(1, full + 1):
        got = vectors(api.embeddings.create(model=NAME, input=TEXTS[:1], dimensions=k))
        assert got.shape == (1, k)
        np.testing.assert_allclose(got, unit(expected[:1, :k]), atol=1e-6)
    for bad in (0, full + 1):
        with pytest.raises(openai.BadRequestError) as err:
            api.embeddings.create(model=NAME, input=TEXTS, dimensions=bad)
        assert f"dimensions must be an integer from 1 to {full}" in err.value.message, err.value.message
        assert err.value.body["param"] == "dimensions"
    for bad in (1.5, float(full), True, "8", -3):
        status, answer = post(url, {"model": NAME, "input": "a", "dimensions": bad})
        assert status == 400 and answer["error"]["param"] == "dimensions", (bad, answer)
        assert f"from 1 to {full}" in answer["error"]["message"]


def test_token_id_input_gets_a_400_that_says_what_to_do(server):
    """Token ids (what LangChain's OpenAIEmbeddings sends by default) are refused, with the way out in the message."""
    url, _ = server
    for tokens in ([101, 2023, 102], [[101, 2023], [102]]):
        with pytest.raises(openai.BadRequestError) as err:
            client(url).embeddings.create(model=NAME, input=tokens)
        message = err.value.message
        assert "takes text only" in message and "check_embedding_ctx_length=False" in message, message
        assert "LangChain's OpenAIEmbeddings" in message and err.value.body["param"] == "input"


@contextmanager
def counting_tokenizer_calls(model: Any, monkeypatch: Any) -> Iterator[list[int]]:
    """Wrap the real tokenizer's `__call__` (its class's: Python looks special methods up there) with a counter;
    yields the list of how many texts each call tokenized."""
    cls = type(model.tokenizer)
    real = cls.__call__
    calls: list[int] = []

    def counted(self: Any, text: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(1 if isinstance(text, str) else len(text))
        return real(self, text, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(cls, "__call__", counted)
        yield calls


def test_each_batch_is_tokenized_once(tiny_model, one_thread, monkeypatch):
    """One tokenizer call per forward batch, each text in it once: the usage counts come from that tokenization."""
    expected = tiny_model.encode(TEXTS)
    lengths = [len(ids) for ids in tiny_model.tokenizer(TEXTS, padding=False)["input_ids"]]
    with running(tiny_model, max_wait_ms=50) as (url, app):
        with counting_tokenizer_calls(tiny_model, monkeypatch) as calls:
            answer = client(url).embeddings.create(model=NAME, input=TEXTS)
        assert calls == [len(TEXTS)], calls
        np.testing.assert_allclose(vectors(answer), expected, atol=1e-5)
        assert answer.usage.prompt_tokens == sum(lengths)

        held = Held(app.state.batcher)  # three requests merged into one batch behind a held one
        with counting_tokenizer_calls(tiny_model, monkeypatch) as calls, ThreadPoolExecutor(4) as pool:
            first = pool.submit(post, url, {"model": NAME, "input": TEXTS[:1]})
            assert held.entered.wait(30)
            merged = [pool.submit(post, url, {"model": NAME, "input": TEXTS[i : i + 2]}) for i in (0, 2, 3)]
            wait_until(lambda: app.state.batcher.queued_texts == 6, "the three requests are queued")
            held.release.set()
            assert first.result()[0] == 200
            answers = [f.result() for f in merged]
        assert calls == [1, 6], calls  # the held request's batch, then the merged one: no text tokenized twice
        for i, (status, body) in zip((0, 2, 3), answers, strict=True):
            assert status == 200
            np.testing.assert_allclose([d["embedding"] for d in body["data"]], expected[i : i + 2], atol=1e-5)
            assert body["usage"]["prompt_tokens"] == sum(lengths[i : i + 2])


def test_batches_are_formed_by_length_and_answers_keep_request_order(tiny_model, one_thread):
    """Behind the oldest waiting request come those nearest to it in text length: short with short, long with long
    (first come, first served would pair each short text with a long one); every answer is its own request's."""
    short, long = ["a cat", "a dog"], [TEXTS[2], TEXTS[4]]
    arrivals = [short[0], long[0], short[1], long[1]]
    with running(tiny_model, max_batch_size=2, max_wait_ms=50) as (url, app):
        batcher = app.state.batcher
        held = Held(batcher)
        with ThreadPoolExecutor(8) as pool:
            first = pool.submit(post, url, {"model": NAME, "input": TEXTS[:2]})
            assert held.entered.wait(30)
            answers = []
            for n, text in enumerate(arrivals, 1):  # one at a time, so that they queue in this order
                answers.append(pool.submit(post, url, {"model": NAME, "input": text}))
                wait_until(lambda n=n: batcher.queued_texts == n, f"request {n} is queued")
            held.release.set()
            assert first.result()[0] == 200
            results = [a.result() for a in answers]
        assert held.texts[1:] == [short, long], held.texts
        for text, (status, body) in zip(arrivals, results, strict=True):
            assert status == 200
            np.testing.assert_allclose(body["data"][0]["embedding"], tiny_model.encode(text), atol=1e-5)


BAD = [  # (request body, status, words of the message, param)
    ({"model": NAME, "input": []}, 400, "must not be an empty list", "input"),
    ({"model": NAME, "input": ["fine", 3]}, 400, "input[1] must be a string, got int", "input"),
    ({"model": NAME, "input": None}, 400, "must provide an input", "input"),
    ({"model": NAME, "input": {"text": "a"}}, 400, "must be a string or a list of strings", "input"),
    ({"model": NAME, "input": [101, 2023, 102]}, 400, "token-id input is not supported", "input"),
    ({"model": NAME, "input": [[101, 2023], [102]]}, 400, "token-id input is not supported", "input"),
    ({"model": NAME, "input": ["a"] * 9}, 400, "holds 9 texts; at most 8", "input"),
    ({"model": NAME, "input": "a", "dimensions": 0}, 400, "dimensions must be an integer from 1 to", "dimensions"),
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
    (b'{"model": "tiny-c2v", "input": ' + b"[" * 5000 + b"]" * 5000 + b"}", 400, "nested too deeply", None),
    ({"model": NAME, "input": "a", "prompt_name": ["query"]}, 400, "got ['query']", "prompt_name"),
    ({"model": NAME, "input": "a", "encoding_format": [[[["f"]]]]}, 400, "got [[[[...]]]]", None),
]


def test_bad_input_gets_openai_errors_while_good_requests_are_served(server, tiny_model, one_thread):
    url, _ = server
    expected = tiny_model.encode(TEXTS)

    with ThreadPoolExecutor(8) as pool:
        good = [pool.submit(client(url).embeddings.create, model=NAME, input=TEXTS) for _ in range(3)]
        answers = list(pool.map(lambda body: post(url, body), [body for body, *_ in BAD]))
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
        batcher = app.state.batcher
        held = Held(batcher)  # the real embedder, held until the test has queued what it needs
        api = client(url)
        with ThreadPoolExecutor(8) as pool:
            first = pool.submit(api.embeddings.create, model=NAME, input=TEXTS[:2])
            assert held.entered.wait(30)  # the worker holds the first request
            singles = [pool.submit(api.embeddings.create, model=NAME, input=t) for t in TEXTS]
            wait_until(lambda: batcher.queued_texts == len(TEXTS), "the singles are queued")
            with pytest.raises(openai.APIStatusError) as err:  # 5 queued + 2 > max_queue=6
                api.embeddings.create(model=NAME, input=TEXTS[:2])
            assert err.value.status_code == 503 and "busy" in err.value.message
            assert err.value.response.headers["retry-after"] == "1"
            held.release.set()
            np.testing.assert_allclose(vectors(first.result()), tiny_model.encode(TEXTS[:2]), atol=1e-5)
            got = np.concatenate([vectors(f.result()) for f in singles])
        np.testing.assert_allclose(got, tiny_model.encode(TEXTS), atol=1e-5)
        stats = raw(url, "/stats")[1]
        # the 5 queued singles ran as batches of at most 4 texts: 4 + 1, after the held batch of 2
        assert stats["forward_batch_sizes"] == {"1": 1, "2": 1, "4": 1}, stats
        assert stats["queued_texts"] == 0


class FailsOnPrompt:
    """The real model, except that `encode_with_token_counts` (the server's call) raises an internal error for a
    prompt holding `marker` (a stand-in for e.g. running out of memory on one group's long prompt)."""

    def __init__(self, model: Any, marker: str) -> None:
        self.model, self.marker = model, marker

    def encode_with_token_counts(self, texts: list[str], prompt: str | None = None, **kwargs: Any) -> Any:
        if prompt and self.marker in prompt:
            raise RuntimeError("secret internal detail /opt/weights")
        return self.model.encode_with_token_counts(texts, prompt=prompt, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)


def test_a_failing_prompt_group_fails_only_its_own_requests_of_a_merged_batch(tiny_model, one_thread, caplog):
    model = FailsOnPrompt(tiny_model, "BOOM")
    with running(model, max_batch_size=64, max_wait_ms=50) as (url, app):
        batcher = app.state.batcher
        held = Held(batcher)
        bodies = [  # four prompt groups, merged into one batch behind the held first request
            {"model": NAME, "input": TEXTS, "prompt_name": "query"},
            {"model": NAME, "input": TEXTS[:2], "instruction": "BOOM: find the answer"},
            {"model": NAME, "input": TEXTS[2:], "instruction": "word " * 600},
            {"model": NAME, "input": TEXTS[1:4]},
        ]
        with ThreadPoolExecutor(8) as pool:
            first = pool.submit(post, url, {"model": NAME, "input": TEXTS[:1]})
            assert held.entered.wait(30)
            answers = [pool.submit(post, url, body) for body in bodies]
            wait_until(lambda: batcher.queued_texts == 5 + 2 + 3 + 3, "the four requests are queued")
            held.release.set()
            assert first.result()[0] == 200
            (s0, query), (s1, internal), (s2, too_long), (s3, plain) = [a.result() for a in answers]
        assert len(held.batches) == 2 and len(set(held.batches[1])) == 4, held.batches  # one merged batch
        assert s0 == s3 == 200, (query, plain)
        np.testing.assert_allclose(
            [d["embedding"] for d in query["data"]], tiny_model.encode(TEXTS, prompt_name="query"), atol=1e-5
        )
        np.testing.assert_allclose([d["embedding"] for d in plain["data"]], tiny_model.encode(TEXTS[1:4]), atol=1e-5)
        assert s2 == 400 and "too long for decoder_max_length" in too_long["error"]["message"]
        error = internal["error"]
        assert (s1, error["type"], error["code"], error["param"]) == (500, "server_error", "internal_error", None)
        assert "error id" in error["message"] and "secret" not in error["message"]
        assert "RuntimeError" not in error["message"]
        error_id = error["message"].split("error id ")[1].split(";")[0]
        logged = [r for r in caplog.records if error_id in r.getMessage()]
        assert logged and "secret internal detail" in str(logged[0].exc_info[1])  # the log has what the client has not

        # an error of the whole batch (not one group's): the same generic 500, and the server goes on
        def broken(jobs: list[Any]) -> list[Any]:
            raise RuntimeError("secret internal detail /opt/weights")

        batcher.embed = broken
        status, answer = post(url, {"model": NAME, "input": TEXTS})
        assert status == 500 and "secret" not in answer["error"]["message"], answer
        assert "error id" in answer["error"]["message"]
        batcher.embed = held.real
        assert post(url, {"model": NAME, "input": TEXTS})[0] == 200
        assert raw(url, "/health")[0] == 200


class WorkerKilled(BaseException):
    """Not an `Exception`: the batcher's worker does not catch it, and dies."""


def test_a_dead_worker_answers_503_and_health_says_so(tiny_model, one_thread):
    def die(jobs: list[Any]) -> list[Any]:
        raise WorkerKilled

    with running(tiny_model, max_wait_ms=50) as (url, app):
        batcher = app.state.batcher
        assert raw(url, "/health")[0] == 200
        held = Held(batcher, then=die)
        with ThreadPoolExecutor(4) as pool:
            running_request = pool.submit(post, url, {"model": NAME, "input": TEXTS[:2]})
            assert held.entered.wait(30)
            queued_request = pool.submit(post, url, {"model": NAME, "input": TEXTS})
            wait_until(lambda: batcher.queued_texts == len(TEXTS), "the second request is queued")
            held.release.set()
            for status, answer in (running_request.result(), queued_request.result()):  # no request hangs
                assert status == 503 and "worker has stopped" in answer["error"]["message"], answer
                assert answer["error"]["code"] == "server_unavailable"
        status, health = raw(url, "/health")
        assert (status, health["status"]) == (503, "unavailable") and "worker has stopped" in health["reason"]
        t0 = time.monotonic()
        status, answer = post(url, {"model": NAME, "input": "a new request"})
        assert status == 503 and "worker has stopped" in answer["error"]["message"]
        assert time.monotonic() - t0 < 30  # answered at once: a server waiting on its dead worker hangs (60 s)
        assert raw(url, "/stats")[0] == 200


def test_shutdown_lets_queued_requests_finish(tiny_model, one_thread):
    # a grace far longer than the margin below, so a loaded machine cannot pass a server that waits it out
    with running(tiny_model, max_wait_ms=50, max_batch_size=4, graceful_s=120) as (url, app):
        held = Held(app.state.batcher)
        with ThreadPoolExecutor(4) as pool:
            running_request = pool.submit(post, url, {"model": NAME, "input": TEXTS[:2]})
            assert held.entered.wait(30)
            queued_request = pool.submit(post, url, {"model": NAME, "input": TEXTS})
            wait_until(lambda: app.state.batcher.queued_texts == len(TEXTS), "the second request is queued")
            app.state.server.should_exit = True  # what SIGTERM does
            wait_until(lambda: app.state.batcher.closing, "shutdown begins")
            time.sleep(0.2)
            assert app.state.thread.is_alive()  # waiting for the held forward
            held.release.set()
            t0 = time.monotonic()
            app.state.thread.join(150)
            assert not app.state.thread.is_alive() and time.monotonic() - t0 < 60  # not the whole 120 s of grace
            (s1, first), (s2, second) = running_request.result(), queued_request.result()
        assert s1 == s2 == 200, (first, second)
        np.testing.assert_allclose([d["embedding"] for d in second["data"]], tiny_model.encode(TEXTS), atol=1e-5)


def test_shutdown_answers_what_cannot_finish_in_time_with_503_without_waiting_for_the_forward(tiny_model, one_thread):
    with running(tiny_model, max_wait_ms=50, graceful_s=1) as (url, app):
        held = Held(app.state.batcher)
        try:
            with ThreadPoolExecutor(4) as pool:
                running_request = pool.submit(post, url, {"model": NAME, "input": TEXTS[:2]})
                assert held.entered.wait(30)
                queued_request = pool.submit(post, url, {"model": NAME, "input": TEXTS})
                wait_until(lambda: app.state.batcher.queued_texts == len(TEXTS), "the second request is queued")
                app.state.server.should_exit = True
                # the forward stays held, yet the server answers both requests and stops: nothing waits on it
                app.state.thread.join(20)
                assert not app.state.thread.is_alive(), "the server did not stop while a forward was running"
                for status, answer in (running_request.result(), queued_request.result()):
                    assert status == 503 and "shutting down" in answer["error"]["message"], answer
                    assert answer["error"]["type"] == "server_error"
        finally:
            held.release.set()  # let the worker thread end


def test_stats_is_a_consistent_snapshot_while_the_worker_counts(tiny_model):
    """`/stats` reads the batch-size counter from the event loop while the worker thread adds to it. (Under the GIL
    an unlocked dict copy happens not to tear either; the lock keeps it so without relying on that.)"""
    embedder = create_app(tiny_model, Settings()).state.embedder
    embedder.batch_size = 10**9  # every count below adds a new size: the dict grows while it is read
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        counting = threading.Thread(target=lambda: [embedder.count(n) for n in range(1, 20_001)])
        counting.start()
        seen = 0
        while counting.is_alive():
            snapshot = embedder.stats()
            assert len(snapshot) >= seen and all(v == 1 for v in snapshot.values())
            seen = len(snapshot)
        counting.join()
    finally:
        sys.setswitchinterval(switch)
    assert len(embedder.stats()) == 20_000
