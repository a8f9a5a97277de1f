from kedro.pipeline import Node, Pipeline

from dinoflow.pipelines.register.nodes import register_node


def create_pipeline(**kwargs) -> Pipeline:
    inputs = [
        "pretrain_result",
        "metrics",
        "validation_report",
        "data_source",
        "dataset_index",
        "params:register",
        "params:evaluate",
    ]
    return Pipeline([Node(register_node, inputs, "registration", name="register_node")])
