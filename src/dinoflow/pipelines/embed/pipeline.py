"""``kedro run --pipeline embed --params embed.source=<folder>``: not part of the default flow.
The ingestion and validation nodes are the data pipelines' own functions, on the folder's
datasets (``embed_*``), so the training data's manifest and reports are left as they are."""

from kedro.pipeline import Node, Pipeline

from dinoflow.pipelines.data_ingestion.nodes import build_manifest_node, materialize_source
from dinoflow.pipelines.data_validation.nodes import stop_on_failed_validation_node, validate_manifest_node
from dinoflow.pipelines.embed.nodes import embed_node, embed_settings


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(embed_settings, ["params:data", "params:validation", "params:embed"],
                 ["embed_data_params", "embed_validation_params"], name="embed_settings_node"),
            Node(materialize_source, "embed_data_params", "embed_source", name="embed_source_node"),
            Node(build_manifest_node, ["embed_source", "embed_data_params"], "embed_image_manifest",
                 name="embed_manifest_node"),
            Node(validate_manifest_node, ["embed_image_manifest", "embed_data_params", "embed_validation_params"],
                 ["embed_validated_manifest", "embed_quarantine_report", "embed_validation_report"],
                 name="embed_validate_node"),
            Node(stop_on_failed_validation_node, ["embed_validated_manifest", "embed_validation_report"],
                 "embed_clean_manifest", name="embed_stop_on_failed_validation_node"),
            Node(embed_node, ["embed_clean_manifest", "embed_source", "params:embed"], "embed_report",
                 name="embed_node"),
        ]
    )  # fmt: skip
