"""MLflow model registry: versions, tags, aliases."""
