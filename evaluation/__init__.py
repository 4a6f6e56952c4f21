"""Evaluation of Causal2Vec checkpoints and baselines on local data: `python -m evaluation run|efficiency`."""
