from kedro.pipeline import Node, Pipeline

from dinoflow.pipelines.data_ingestion.nodes import build_manifest_node, materialize_source


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(materialize_source, "params:data", "data_source", name="materialize_source_node"),
            Node(
                build_manifest_node,
                ["data_source", "params:data"],
                "image_manifest",
                name="build_manifest_node",
            ),
        ]
    )
