"""Benchmark commands that print numbers (`python -m benchmarks.encode_speed --help`)."""
