"""Optuna tuning of the teacher schedules (the only package that imports optuna)."""
