"""dinoflow: reproducible DINO / DINOv2 pretraining."""

__version__ = "0.1.0"
