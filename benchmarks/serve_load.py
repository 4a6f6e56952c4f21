"""Load test of `python -m serve`: concurrent `openai` clients on 127.0.0.1, as a ratio to direct `encode()`.

nice -n 19 python -m benchmarks.serve_load --model runs/default-init --clients 8 --requests 200 --duration 120

Starts the server as a subprocess on a free 127.0.0.1 port and loads the model in this process too. Times
`model.encode` on `--direct-texts` of the same sentences (same batch size, dtype and threads), sends `--requests`
requests (each `--texts` STS-B test sentences) from `--clients` threads, stopping early after `--duration` seconds,
then times `model.encode` again, and stops the server. Prints a markdown table: requests, server texts/s, direct
texts/s before and after, their ratio, p50/p99 latency, the forward batch sizes the server ran. Before the load,
`--lone` one-text requests one after another (nothing else in flight) against as many one-text direct `encode()`
calls, interleaved: the p50 of each and their ratio. On a shared machine only the ratios mean something: the direct
runs on either side of the load show how much the CPU share drifted. `--rounds R` splits the load into R rounds with a
direct timing after each, so that both sides see the same minutes' share.
"""

from __future__ import annotations

import argparse
import itertools
import json
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.encode_speed import STSB_TEST, stsb_sentences
from causal2vec import REPO_ROOT

FALLBACK = ["A man is playing a guitar.", "The stock market fell sharply on Monday.", "A cat sleeps on the mat."]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get_json(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def start_server(args: argparse.Namespace, port: int) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "serve", "--model", str(args.model), "--port", str(port), "--dtype", args.dtype]
    cmd += ["--threads", str(args.threads), "--max-batch-size", str(args.max_batch_size)]
    cmd += ["--max-wait-ms", str(args.max_wait_ms), "--served-model-name", "bench", "--log-level", "warning"]
    server = subprocess.Popen(cmd, cwd=REPO_ROOT, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + args.start_timeout
    while True:
        if server.poll() is not None:
            raise RuntimeError(f"the server exited: {server.stderr.read()[-2000:]}")
        if time.monotonic() > deadline:
            server.kill()
            raise TimeoutError(f"the server did not come up in {args.start_timeout} s")
        try:
            get_json(f"http://127.0.0.1:{port}/health")
            return server
        except OSError:
            time.sleep(0.5)


def stop(server: subprocess.Popen) -> None:
    """SIGTERM (the server stops within its --graceful-s), then SIGKILL if it is still there."""
    server.terminate()
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


def make_sender(url: str, kind: str, fmt: str) -> Callable[[list[str]], None]:
    """One client's request function, raising on a failed request: the `openai` SDK, or plain HTTP (`http.client`,
    one keep-alive connection; the reply parsed and its vectors decoded, as any client must), which costs the
    shared CPU less: on one machine the clients' own work slows the server they measure."""
    if kind == "openai":
        import openai

        api = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=120)
        return lambda texts: api.embeddings.create(model="bench", input=texts, encoding_format=fmt) and None
    import base64
    import http.client
    import urllib.parse

    import numpy as np

    where = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(where.hostname, where.port, timeout=120)

    def send(texts: list[str]) -> None:
        body = json.dumps({"model": "bench", "input": texts, "encoding_format": fmt})
        try:
            conn.request("POST", "/v1/embeddings", body, {"Content-Type": "application/json"})
            response = conn.getresponse()
            payload = response.read()
        except (OSError, http.client.HTTPException):
            conn.close()  # the next request reconnects
            raise
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status}: {payload[:200]!r}")
        for item in json.loads(payload)["data"]:
            vector = item["embedding"]
            np.frombuffer(base64.b64decode(vector), "<f4") if fmt == "base64" else np.asarray(vector, "<f4")

    return send


def load(
    url: str, batches: list[list[str]], clients: int, duration: float, fmt: str, kind: str
) -> tuple[list[float], int, float]:
    """Send `batches` from `clients` threads until all are sent or `duration` passes; (latencies, errors, seconds)."""
    counter, lock = itertools.count(), threading.Lock()
    latencies: list[float] = []
    errors = [0]
    start = time.perf_counter()

    def client() -> None:
        send = make_sender(url, kind, fmt)
        while time.perf_counter() - start < duration:
            with lock:
                i = next(counter)
            if i >= len(batches):
                return
            t0 = time.perf_counter()
            try:
                send(batches[i])
            except Exception:  # any failed request counts as an error; the test goes on
                with lock:
                    errors[0] += 1
                continue
            with lock:
                latencies.append(time.perf_counter() - t0)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, errors[0], time.perf_counter() - start


def lone_latencies(
    url: str, model: Any, texts: list[str], n: int, dtype: Any, fmt: str, kind: str
) -> tuple[list[float], list[float]]:
    """`n` one-text requests, each alone in flight, and `n` one-text direct `encode()` calls, interleaved so that
    both see the same CPU share: (request seconds, direct seconds)."""
    send = make_sender(url, kind, fmt)
    served: list[float] = []
    direct: list[float] = []
    for i in range(n):
        text = texts[i % len(texts)]
        t0 = time.perf_counter()
        send([text])
        served.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        model.encode([text], dtype=dtype)
        direct.append(time.perf_counter() - t0)
    return served, direct


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, type=Path, help="Causal2Vec checkpoint folder")
    p.add_argument("--clients", type=int, default=8, help="concurrent client threads")
    p.add_argument("--requests", type=int, default=200, help="requests in all (the test stops after this many)")
    p.add_argument("--duration", type=float, default=60, help="stop sending after this many seconds")
    p.add_argument("--texts", type=int, default=1, help="texts per request")
    p.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32")
    p.add_argument("--threads", type=int, default=2, help="torch threads of the server (and of direct encode)")
    p.add_argument("--max-batch-size", type=int, default=32)
    p.add_argument("--max-wait-ms", type=float, default=5.0)
    p.add_argument(
        "--encoding-format",
        choices=("base64", "float"),
        default="base64",
        help="what the clients ask for (base64: the openai client's default; float: JSON numbers)",
    )
    p.add_argument(
        "--client", choices=("openai", "http"), default="openai", help="the clients' library (see make_sender)"
    )
    p.add_argument("--rounds", type=int, default=1, help="load rounds, each followed by a direct timing")
    p.add_argument("--lone", type=int, default=20, help="lone one-text requests (and direct calls) timed")
    p.add_argument("--direct-texts", type=int, default=64, help="texts of each direct encode() timing")
    p.add_argument("--start-timeout", type=float, default=600, help="seconds the server may take to come up")
    p.add_argument("--data", type=Path, default=STSB_TEST, help="STS TSV whose sentences are sent")
    p.add_argument("--output", type=Path, help="also write the results as JSON here")
    args = p.parse_args(argv)
    if (
        min(args.clients, args.requests, args.texts, args.direct_texts, args.lone, args.rounds) < 1
        or args.duration <= 0
    ):
        p.error("--clients, --requests, --texts, --direct-texts, --lone, --rounds and --duration must be positive")

    import torch
    from transformers import AutoModel

    sentences = stsb_sentences(args.data) if args.data.is_file() else FALLBACK
    pool = itertools.cycle(sentences)
    batches = [[next(pool) for _ in range(args.texts)] for _ in range(args.requests)]
    direct_texts = [next(pool) for _ in range(args.direct_texts)]
    torch.set_num_threads(args.threads)
    model = AutoModel.from_pretrained(args.model, trust_remote_code=True).eval()
    dtype = torch.bfloat16 if args.dtype == "bf16" else None
    model.encode(direct_texts[:8], dtype=dtype)  # warm-up

    def direct() -> float:
        t0 = time.perf_counter()
        model.encode(direct_texts, batch_size=args.max_batch_size, dtype=dtype)
        return len(direct_texts) / (time.perf_counter() - t0)

    fmt, kind = args.encoding_format, args.client
    port = free_port()
    server = start_server(args, port)
    try:
        url = f"http://127.0.0.1:{port}"
        load(url, batches[: args.clients], args.clients, args.duration, fmt, kind)  # warm-up, not counted
        lone = lone_latencies(url, model, direct_texts, args.lone, dtype, fmt, kind)
        direct()  # warm-up at the timed shapes (the first call of a batch shape pays for its kernels)
        directs = [direct()]  # the server idles meanwhile
        before = get_json(url + "/stats")["forward_batch_sizes"]
        latencies, errors, seconds = [], 0, 0.0
        for r in range(args.rounds):  # load and direct alternate: both see the CPU share of the same minutes
            chunk = batches[r * len(batches) // args.rounds : (r + 1) * len(batches) // args.rounds]
            lat, err, sec = load(url, chunk, args.clients, args.duration / args.rounds, fmt, kind)
            latencies, errors, seconds = latencies + lat, errors + err, seconds + sec
            directs.append(direct())
        after = get_json(url + "/stats")["forward_batch_sizes"]
    finally:
        stop(server)
    sizes = {int(k): v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0)}
    texts_per_s = len(latencies) * args.texts / seconds

    result = {
        "model": str(args.model),
        "clients": args.clients,
        "requests": len(latencies),
        "errors": errors,
        "texts_per_request": args.texts,
        "seconds": round(seconds, 2),
        "texts_per_s": round(texts_per_s, 2),
        "p50_ms": round(1000 * percentile(latencies, 50), 1),
        "p99_ms": round(1000 * percentile(latencies, 99), 1),
        "forward_batch_sizes": dict(sorted(sizes.items())),
        "lone_p50_ms": round(1000 * percentile(lone[0], 50), 1),
        "direct_one_text_p50_ms": round(1000 * percentile(lone[1], 50), 1),
        "lone_over_direct": round(percentile(lone[0], 50) / percentile(lone[1], 50), 3),
        "direct_encode_texts_per_s": [round(d, 2) for d in directs],
        "server_over_direct": round(texts_per_s / statistics.fmean(directs), 3),
        "rounds": args.rounds,
        "encoding_format": fmt,
        "client": kind,
        "dtype": args.dtype,
        "threads": args.threads,
        "max_batch_size": args.max_batch_size,
        "max_wait_ms": args.max_wait_ms,
    }
    seen = ", ".join(f"{k}: {v}" for k, v in result["forward_batch_sizes"].items())
    print(
        "| clients | requests (errors) | server texts / s | direct encode texts / s (before, after each round) "
        "| server / direct | p50 | p99 | forward batch sizes (size: count) |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    print(
        f"| {args.clients} | {result['requests']} ({errors}) | {result['texts_per_s']} | "
        f"{', '.join(map(str, result['direct_encode_texts_per_s']))} | "
        f"{result['server_over_direct']} | {result['p50_ms']} ms | {result['p99_ms']} ms | {seen} |"
    )
    print(
        f"lone one-text request p50 {result['lone_p50_ms']} ms, direct one-text encode() p50 "
        f"{result['direct_one_text_p50_ms']} ms: {result['lone_over_direct']}x ({args.lone} each, interleaved)"
    )
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
