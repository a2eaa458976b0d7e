"""Fault runs of aiotaskq: ``python -m benchmarks.faults`` (see docs/reliability.md)."""
