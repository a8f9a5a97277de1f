from kedro.pipeline import Node, Pipeline

from dinoflow.pipelines.tune.nodes import tune_node


def create_pipeline(**kwargs) -> Pipeline:
    inputs = [
        "dataset_index",
        "params:pretrain",
        "params:pretrain_presets",
        "params:tune",
        "params:evaluate",
    ]
    return Pipeline([Node(tune_node, inputs, ["tuning_summary", "tuned_pretrain", "tuning_plots"], name="tune_node")])
