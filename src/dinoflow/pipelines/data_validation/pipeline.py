from kedro.pipeline import Node, Pipeline

from dinoflow.pipelines.data_validation.nodes import validate_manifest_node


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                validate_manifest_node,
                ["image_manifest", "params:data", "params:validation"],
                ["clean_manifest", "quarantine_report", "validation_report"],
                name="validate_manifest_node",
            )
        ]
    )
