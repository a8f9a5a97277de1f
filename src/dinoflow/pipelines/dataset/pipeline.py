from kedro.pipeline import Node, Pipeline

from dinoflow.pipelines.dataset.nodes import build_dataset_node


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                build_dataset_node,
                ["curated_manifest", "data_source", "params:dataset", "params:data"],
                "dataset_index",
                name="build_dataset_node",
            )
        ]
    )
