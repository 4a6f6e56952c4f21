"""The corpus embedding job, `python -m embed --model DIR --input PATH --output DIR`: a corpus (JSON lines, parquet,
a `datasets` folder or Hub id) into parquet shards of `id` and `embedding`, with a manifest, resumable, on N local
processes or on Ray Data (`--ray`).

- `corpus`: reading and checking the input
- `embedder`: `Embedder`, the model replica both paths run (and the int8 / ubinary quantization)
- `job`: plan, manifest, resume, shard writer, the plain multi-process path, `run_job`
- `ray_job`: the Ray Data path (Ray is imported only there)

It imports sentence-transformers and the checkpoint's own remote code, never `train`, `evaluation` or `serve`.
"""
