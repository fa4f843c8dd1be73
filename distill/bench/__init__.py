"""Benchmark harnesses behind `distill bench …`: each measures one part of distill beside its baseline."""
