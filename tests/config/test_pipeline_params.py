"""Pipeline parameters refuse wrong values with an error that names the key and what is accepted."""

import pytest
from pydantic import ValidationError

from tests.pipelines.test_data_pipelines import data_params


def test_alpha_background_accepts_names_and_rgb_triples(tmp_path):
    for value in ("white", "black", "Black", "128,128,128"):
        assert data_params(tmp_path, alpha_background=value).alpha_background == value
    assert data_params(tmp_path).alpha_background == "white"  # the default


def test_a_wrong_alpha_background_is_named_with_the_accepted_forms(tmp_path):
    with pytest.raises(ValidationError, match=r"alpha_background[\s\S]*'white', 'black' or 'R,G,B'[\s\S]*'grey'"):
        data_params(tmp_path, alpha_background="grey")


def test_min_pixel_std_defaults_on_and_refuses_negatives(tmp_path):
    assert data_params(tmp_path).min_pixel_std == 2.0
    with pytest.raises(ValidationError, match="min_pixel_std"):
        data_params(tmp_path, min_pixel_std=-1)


def test_every_node_annotation_resolves_so_kedro_validates_its_params():
    """Kedro validates a node's ``params:`` inputs from its resolved type hints; a name that only
    exists under ``TYPE_CHECKING`` makes the hints unresolvable and the params reach the node as
    plain dicts, unvalidated (it happened: ``'dict' object has no attribute 'enabled'``)."""
    import importlib
    import pkgutil
    import typing

    import dinoflow.pipelines

    names = [m.name for m in pkgutil.iter_modules(dinoflow.pipelines.__path__)]
    nodes = [n for name in names for n in importlib.import_module(f"dinoflow.pipelines.{name}").create_pipeline().nodes]
    assert len(nodes) >= 12
    for node in nodes:
        hints = typing.get_type_hints(node.func)  # raises NameError on an unresolvable annotation
        assert "return" in hints, node.name
