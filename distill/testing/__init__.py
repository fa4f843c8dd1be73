"""Test doubles that ship with distill: OpenAI-compatible stand-in servers for tests, demos and benchmarks."""
