from kedro.pipeline import Node, Pipeline

from dinoflow.pipelines.evaluate.nodes import evaluate_node, training_curve_picture_node


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                evaluate_node,
                ["dataset_index", "pretrain_result", "params:evaluate"],
                ["metrics", "evaluation_record"],
                name="evaluate_node",
            ),
            Node(
                training_curve_picture_node,
                ["training_curve", "params:evaluate"],
                "training_curve_picture",
                name="training_curve_picture_node",
            ),
        ]
    )
