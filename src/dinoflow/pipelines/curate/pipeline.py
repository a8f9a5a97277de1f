from kedro.pipeline import Node, Pipeline

from dinoflow.pipelines.curate.nodes import curate_node


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                curate_node,
                ["clean_manifest", "data_source", "params:curation", "params:data", "params:dataset"],
                ["curated_manifest", "curation_report", "curation_removed", "curation_pictures"],
                name="curate_node",
            )
        ]
    )
