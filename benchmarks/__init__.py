"""Benchmarks: cost (FLOPs, latency, memory) and representation quality."""
