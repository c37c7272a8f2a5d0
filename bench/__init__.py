"""Benchmarks: each ``bench/<name>.py`` prints a Markdown table and writes ``bench/results/<name>.json``."""
