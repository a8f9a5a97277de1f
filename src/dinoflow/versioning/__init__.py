"""Data versioning with DVC."""
