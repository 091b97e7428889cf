"""Benchmarks: `make bench`. Figures go to BENCHMARKS.md with the command and machine."""
