"""Launchers for the training process: local (torchrun) now, Kubernetes next."""
