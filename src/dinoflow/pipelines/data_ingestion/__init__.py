from dinoflow.pipelines.data_ingestion.pipeline import create_pipeline

__all__ = ["create_pipeline"]
