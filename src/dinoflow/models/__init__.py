"""Backbones, heads and the student/teacher pair (pure PyTorch + timm)."""
