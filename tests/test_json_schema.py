"""Every sample's JSON report validates against docs/acflow-report.schema.json (the public contract)."""
from __future__ import annotations

import json

import jsonschema
import pytest

from .conftest import ROOT
from .helpers import ALL, doc

SCHEMA = json.loads((ROOT / "docs" / "acflow-report.schema.json").read_text())


@pytest.mark.parametrize("name", ALL)
def test_report_validates(name):
    jsonschema.validate(doc(name, show_secrets=False), SCHEMA)


def test_schema_rejects_renamed_phase():
    d = json.loads(json.dumps(doc("baseline", show_secrets=False)))
    d["sessions"][0]["phases"][4]["phase"] = "cstp"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(d, SCHEMA)
