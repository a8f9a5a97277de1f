"""Pretraining process: schedules, optimizer, loop, checkpoints (pure PyTorch)."""
