from kedro.pipeline import Node, Pipeline

from dinoflow.pipelines.evaluate.nodes import evaluate_node


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                evaluate_node,
                ["dataset_index", "pretrain_result", "training_curve", "params:evaluate"],
                ["metrics", "evaluation_record", "evaluation_pictures"],
                name="evaluate_node",
            ),
        ]
    )
