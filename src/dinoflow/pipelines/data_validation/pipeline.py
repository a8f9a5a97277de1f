from kedro.pipeline import Node, Pipeline

from dinoflow.pipelines.data_validation.nodes import stop_on_failed_validation_node, validate_manifest_node


def create_pipeline(**kwargs) -> Pipeline:
    """Validate, save the reports, then stop (or pass the clean rows on): a failed validation still
    leaves this run's quarantine list and report."""
    return Pipeline(
        [
            Node(
                validate_manifest_node,
                ["image_manifest", "params:data", "params:validation"],
                ["validated_manifest", "quarantine_report", "validation_report"],
                name="validate_manifest_node",
            ),
            Node(
                stop_on_failed_validation_node,
                ["validated_manifest", "validation_report"],
                "clean_manifest",
                name="stop_on_failed_validation_node",
            ),
        ]
    )
