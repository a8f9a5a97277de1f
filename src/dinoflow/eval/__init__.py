"""Evaluation of frozen backbones: features, k-NN (pure PyTorch)."""
