"""`python -m serve --model PATH --port 8000`: serve a Causal2Vec checkpoint folder with the OpenAI embeddings API."""

from __future__ import annotations

import argparse
import logging
import sys

import torch

from serve.app import Settings

DTYPES = ("auto", "fp32", "bf16")


def pick_dtype(name: str, device: torch.device) -> torch.dtype | None:
    """`fp32` -> None (plain fp32), `bf16` -> bf16 autocast; `auto`: bf16 where the hardware runs it natively."""
    if name == "fp32":
        return None
    if name == "bf16":
        return torch.bfloat16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    try:  # CPUs with AVX512-BF16 / AMX: bf16 autocast is faster than fp32 (docs/benchmarks.md#encode-throughput)
        native = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        native = False
    return torch.bfloat16 if native else None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    d = Settings()
    p = argparse.ArgumentParser(prog="python -m serve", description=__doc__)
    p.add_argument("--model", required=True, help="checkpoint folder (or Hub id) of a Causal2Vec model")
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (0.0.0.0 for all)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--served-model-name", help="the `model` name clients send (default: --model as given)")
    p.add_argument("--dtype", choices=DTYPES, default="fp32", help="fp32 (exact), bf16 (faster on CPU), auto")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--max-batch-size", type=int, default=d.max_batch_size, help="texts per forward")
    p.add_argument("--max-wait-ms", type=float, default=d.max_wait_ms, help="wait this long to fill a batch")
    p.add_argument("--max-queue", type=int, default=d.max_queue, help="texts waiting; beyond this: 503")
    p.add_argument("--max-inputs", type=int, default=d.max_inputs, help="texts per request; beyond this: 400")
    p.add_argument("--max-body-bytes", type=int, default=d.max_body_bytes, help="request size; beyond this: 413")
    p.add_argument(
        "--graceful-s",
        type=float,
        default=d.graceful_s,
        help="on shutdown, queued and running requests get this long to finish, then a 503",
    )
    p.add_argument("--log-level", default="info")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    from transformers import AutoModel

    from serve.app import create_app, make_server

    logging.basicConfig(level=args.log_level.upper())
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    model = AutoModel.from_pretrained(args.model, trust_remote_code=True).to(device)
    settings = Settings(
        served_model_name=args.served_model_name or args.model,
        dtype=pick_dtype(args.dtype, device),
        max_batch_size=args.max_batch_size,
        max_wait_ms=args.max_wait_ms,
        max_queue=args.max_queue,
        max_inputs=args.max_inputs,
        max_body_bytes=args.max_body_bytes,
        graceful_s=args.graceful_s,
    )
    logging.getLogger("serve").info("serving %s as %r, dtype %s", args.model, settings.served_model_name, args.dtype)
    server = make_server(create_app(model, settings), host=args.host, port=args.port, log_level=args.log_level)
    try:  # as uvicorn.run does: Ctrl+C ends quietly, a server that could not start (port taken) exits 3
        server.run()
    except KeyboardInterrupt:
        pass
    if not server.started:
        sys.exit(3)


if __name__ == "__main__":
    main()
