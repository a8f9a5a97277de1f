from dinoflow.pipelines.dataset.pipeline import create_pipeline

__all__ = ["create_pipeline"]
