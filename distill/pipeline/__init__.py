"""`distill run`: the whole distillation, stage by stage, resumable, on one config."""
