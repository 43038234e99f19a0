"""Benchmarks: they print figures (p50/p95, ratios) and the machine they ran on; they assert nothing, and
no library module imports them."""
