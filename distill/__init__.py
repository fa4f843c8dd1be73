"""distill: teacher API → chain-of-thought dataset → LoRA student → ROI verdict."""

__version__ = "0.1.0"
