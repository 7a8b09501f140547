"""Benchmarks that print tables (speed and memory targets live here, never in timed tests)."""

from .attention import BenchConfig, run_benchmark, to_markdown

__all__ = ["BenchConfig", "run_benchmark", "to_markdown"]
