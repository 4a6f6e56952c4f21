"""An OpenAI-compatible embeddings server for Causal2Vec checkpoints: `python -m serve --model PATH --port 8000`."""
