"""Benchmarks: ``python -m bench.matcher`` and ``python -m bench.webhook`` (figures, no asserts)."""
