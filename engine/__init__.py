"""The generation engine: streams inputs, calls the teacher under rate limits, writes resumable shards.

Never imports torch."""
