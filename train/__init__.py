"""Build, fine-tune and export Causal2Vec models (`python -m train --help`)."""
