"""Benchmark suite for SR4ZCT: ``python -m benchmarks.run`` writes BENCHMARKS.md."""
