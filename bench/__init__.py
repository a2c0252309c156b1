"""Benchmarks and the realistic-table generator they feed on (see bench/README.md)."""
