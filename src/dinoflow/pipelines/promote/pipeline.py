from kedro.pipeline import Node, Pipeline

from dinoflow.pipelines.promote.nodes import promote_node


def create_pipeline(**kwargs) -> Pipeline:
    # "registration" orders promote after register in the default flow; promote alone reads the last one.
    inputs = ["registration", "dataset_index", "params:register", "params:evaluate", "params:promote"]
    return Pipeline([Node(promote_node, inputs, "promotion", name="promote_node")])
