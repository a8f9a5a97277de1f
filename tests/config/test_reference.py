"""The README's configuration reference is the one generated from the schemas."""

import re

from dinoflow.config.reference import reference_markdown
from tests.project_copy import PROJECT_ROOT


def test_readme_reference_matches_the_schemas():
    readme = (PROJECT_ROOT / "README.md").read_text()
    match = re.search(r"<!-- config-reference:start -->\n(.*?)<!-- config-reference:end -->", readme, re.S)
    assert match, "README lacks the configuration reference markers"
    assert match.group(1) == reference_markdown(), "regenerate it: python -m dinoflow.config.reference"


def test_every_field_has_a_meaning():
    rows = [line for line in reference_markdown().splitlines() if line.startswith("| `")]
    assert len(rows) > 80
    assert not [row for row in rows if row.rstrip().endswith("|  |")]
