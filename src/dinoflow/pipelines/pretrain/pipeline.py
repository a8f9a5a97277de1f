from kedro.pipeline import Node, Pipeline

from dinoflow.pipelines.pretrain.nodes import plan_pretrain_node, pretrain_node


def create_pipeline(**kwargs) -> Pipeline:
    plan_inputs = ["dataset_index", "params:pretrain", "params:pretrain_presets", "params:pretrain_launcher",
                   "params:pretrain_tuned", "tuned_pretrain"]  # fmt: skip
    return Pipeline(
        [
            Node(plan_pretrain_node, plan_inputs, "pretrain_plan", name="plan_pretrain_node"),
            Node(
                pretrain_node,
                ["pretrain_plan", "dataset_index", "params:pretrain_launcher"],
                ["pretrain_result", "training_curve"],
                name="pretrain_node",
            ),
        ]
    )
