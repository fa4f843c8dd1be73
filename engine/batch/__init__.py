"""Provider batch mode: the same requests sent through a provider's batch API at its batch price.

`plan` writes the batch input files, `journal` is the durable intent log that makes submission exactly-once,
`openai_batches` talks to the provider through the ``openai`` SDK, `collect` turns output and error files
into records through the engine's one record path, and `driver` moves every batch from plan to record.
docs/batch.md describes the design and its guarantees.
"""
