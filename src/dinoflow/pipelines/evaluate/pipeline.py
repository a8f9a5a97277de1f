from kedro.pipeline import Node, Pipeline

from dinoflow.pipelines.evaluate.nodes import evaluate_node, training_curve_picture_node


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                evaluate_node,
                ["dataset_index", "pretrain_result", "params:evaluate"],
                "metrics",
                name="evaluate_node",
            ),
            Node(
                training_curve_picture_node,
                ["training_curve", "params:evaluate"],
                None,
                name="training_curve_picture_node",
            ),
        ]
    )
