"""LoRA SFT of the student on distilled data (transformers + PEFT, DeepSpeed ZeRO)."""
