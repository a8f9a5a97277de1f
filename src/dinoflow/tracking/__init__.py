"""MLflow tracking: run lifecycle, params, metrics, artifacts, metrics sink."""
