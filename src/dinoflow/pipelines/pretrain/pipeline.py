from kedro.pipeline import Node, Pipeline

from dinoflow.pipelines.pretrain.nodes import pretrain_node


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                pretrain_node,
                [
                    "dataset_index",
                    "params:pretrain",
                    "params:pretrain_presets",
                    "params:pretrain_launcher",
                    "params:pretrain_tuned",
                    "tuned_pretrain",
                ],
                ["pretrain_result", "training_curve"],
                name="pretrain_node",
            )
        ]
    )
