"""Every sample's JSON report validates against docs/acflow-report.schema.json (the public contract)."""
from __future__ import annotations

import json

import jsonschema
import pytest

from analyzer import schema

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


def test_committed_schema_is_the_generated_one():
    """The details part of the schema is generated from the dataclasses (python -m analyzer.schema)."""
    text = (ROOT / "docs" / "acflow-report.schema.json").read_text()
    assert schema.render(schema.generate(json.loads(text))) == text, "run: python -m analyzer.schema"


def test_schema_types_the_details():
    d = json.loads(json.dumps(doc("baseline", show_secrets=False)))
    cstp = d["sessions"][0]["phases"][4]["details"]
    cstp["parameters"]["mtu"] = "1400"  # an integer in the contract
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(d, SCHEMA)
    d = json.loads(json.dumps(doc("baseline", show_secrets=False)))
    d["sessions"][0]["phases"][5]["details"]["flows"][0]["surprise"] = 1  # no undocumented keys
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(d, SCHEMA)
    d = json.loads(json.dumps(doc("baseline", show_secrets=False)))
    del d["sessions"][0]["phases"][2]["details"]["rounds"]  # a key every user-auth details object has
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(d, SCHEMA)


@pytest.mark.parametrize("name", ALL)
def test_report_text_is_the_standard_librarys(name):
    """The report text (orjson, analyzer/report/json_report.py `dumps`) is what `json.dumps(doc, indent=2)` writes:
    the same document, ASCII only (non-ASCII as \\u escapes: «redacted», certificate names), the same lines but for
    how a float is spelled (5e-6 / 5e-06)."""
    from analyzer.report.json_report import dumps

    for show in (False, True):
        d = doc(name, show_secrets=show)
        text, std = dumps(d), json.dumps(d, indent=2)
        assert text.isascii() and json.loads(text) == json.loads(std) == d
        same = [a == b or json.loads(a.rstrip(",").split(": ")[-1]) == json.loads(b.rstrip(",").split(": ")[-1])
                for a, b in zip(text.splitlines(), std.splitlines(), strict=True)]
        assert all(same), [(a, b) for a, b, s in zip(text.splitlines(), std.splitlines(), same) if not s][:3]
    assert dumps({"n": 2 ** 70, "s": "\ud800"}) == json.dumps({"n": 2 ** 70, "s": "\ud800"}, indent=2)
