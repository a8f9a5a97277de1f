"""Self-distillation losses (pure PyTorch)."""
