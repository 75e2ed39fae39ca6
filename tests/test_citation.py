"""How the book is cited: ``CITATION.cff`` is valid Citation File Format 1.2.0 and agrees with the rest of the
repository, and the citations the built book shows (``book/_ext/citing.py``) are well-formed BibTeX.

There is no network, so the CFF schema is not downloaded: :data:`CFF_SCHEMA` is written here from the
CFF 1.2.0 specification as a faithful subset of its JSON schema. It has every top-level key, every key of a
reference, person and entity, the required keys, the types (integers for ``year``, ``volume``, ``start``,
``end``...), the patterns of dates, URLs, DOIs and ORCIDs, the ``type`` enumerations, and
``additionalProperties: false`` where the schema has it. Reduced: the SPDX licence list and the ISO 3166
country list are replaced by their identifier patterns; descriptions and examples are left out.
"""

from __future__ import annotations

import datetime
import importlib
import re
import sys
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

import noether_lib

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "book" / "_ext"))
citing = importlib.import_module("citing")

_STRING = {"type": "string", "minLength": 1}
_INTEGER = {"type": "integer"}
_STRING_OR_NUMBER = {"anyOf": [_STRING, {"type": "number"}]}
_PEOPLE = {
    "type": "array",
    "minItems": 1,
    "uniqueItems": True,
    "items": {"anyOf": [{"$ref": "#/definitions/person"}, {"$ref": "#/definitions/entity"}]},
}
_UNIQUE_STRINGS = {"type": "array", "minItems": 1, "uniqueItems": True, "items": _STRING}
_IDENTIFIERS = {"type": "array", "minItems": 1, "uniqueItems": True, "items": {"$ref": "#/definitions/identifier"}}
_CONTACT_FIELDS = ("address", "alias", "city", "fax", "region", "tel")


def _identifier(kind: str, value: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["type", "value"],
        "properties": {"type": {"type": "string", "enum": [kind]}, "value": value, "description": _STRING},
    }


_REFERENCE_TYPES = [
    "art",
    "article",
    "audiovisual",
    "bill",
    "blog",
    "book",
    "catalogue",
    "conference-paper",
    "conference",
    "data",
    "database",
    "dictionary",
    "edited-work",
    "encyclopedia",
    "film-broadcast",
    "generic",
    "government-document",
    "grant",
    "hearing",
    "historical-work",
    "legal-case",
    "legal-rule",
    "magazine-article",
    "manual",
    "map",
    "multimedia",
    "music",
    "newspaper-article",
    "pamphlet",
    "patent",
    "personal-communication",
    "proceedings",
    "report",
    "serial",
    "slides",
    "software-code",
    "software-container",
    "software-executable",
    "software-virtual-machine",
    "software",
    "sound-recording",
    "standard",
    "statute",
    "thesis",
    "unpublished",
    "video",
    "website",
]
_REFERENCE_STRINGS = [
    "abbreviation",
    "abstract",
    "collection-title",
    "collection-type",
    "copyright",
    "data-type",
    "database",
    "department",
    "edition",
    "entry",
    "filename",
    "format",
    "issue-date",
    "issue-title",
    "journal",
    "medium",
    "nihmsid",
    "notes",
    "scope",
    "term",
    "thesis-type",
    "title",
    "volume-title",
]
_REFERENCE = {
    "type": "object",
    "additionalProperties": False,
    "required": ["authors", "title", "type"],
    "properties": {
        **{key: _STRING for key in _REFERENCE_STRINGS},
        **{
            key: _INTEGER
            for key in (
                "end",
                "start",
                "loc-end",
                "loc-start",
                "number-volumes",
                "pages",
                "volume",
                "year",
                "year-original",
            )
        },
        **{key: _STRING_OR_NUMBER for key in ("issue", "number", "section")},
        **{
            key: _PEOPLE
            for key in ("authors", "contact", "editors", "editors-series", "recipients", "senders", "translators")
        },
        **{
            key: {"$ref": "#/definitions/entity"}
            for key in ("conference", "database-provider", "institution", "location", "publisher")
        },
        **{
            key: {"$ref": "#/definitions/date"}
            for key in ("date-accessed", "date-downloaded", "date-published", "date-released")
        },
        **{
            key: {"$ref": "#/definitions/url"}
            for key in ("license-url", "repository", "repository-artifact", "repository-code", "url")
        },
        "collection-doi": {"$ref": "#/definitions/doi"},
        "doi": {"$ref": "#/definitions/doi"},
        "commit": _STRING,
        "identifiers": _IDENTIFIERS,
        "isbn": {"type": "string", "pattern": r"^[0-9\- ]{10,17}X?$"},
        "issn": {"type": "string", "pattern": r"^\d{4}-\d{3}[\dxX]$"},
        "keywords": _UNIQUE_STRINGS,
        "languages": {
            "type": "array",
            "minItems": 1,
            "uniqueItems": True,
            "items": {"type": "string", "pattern": "^[a-z]{2,3}$"},
        },
        "license": {"$ref": "#/definitions/license"},
        "month": {"type": "integer", "minimum": 1, "maximum": 12},
        "patent-states": _UNIQUE_STRINGS,
        "pmcid": {"type": "string", "pattern": "^PMC[0-9]{7}$"},
        "status": {
            "type": "string",
            "enum": ["abstract", "advance-online", "in-preparation", "in-press", "preprint", "submitted"],
        },
        "type": {"type": "string", "enum": _REFERENCE_TYPES},
        "version": {"$ref": "#/definitions/version"},
    },
}

#: A faithful subset of the CFF 1.2.0 JSON schema (see the module docstring for what is reduced).
CFF_SCHEMA: dict[str, Any] = {
    "$schema": "http://json-schema.org/draft-07/schema",
    "type": "object",
    "additionalProperties": False,
    "required": ["authors", "cff-version", "message", "title"],
    "definitions": {
        "date": {"type": "string", "pattern": "^[0-9]{4}-(0[1-9]|1[012])-(0[1-9]|[12][0-9]|3[01])$"},
        "url": {"type": "string", "pattern": "^(https|http|ftp|sftp)://.+"},
        "doi": {"type": "string", "pattern": r"^10\.\d{4,9}(\.\d+)?/[A-Za-z0-9:/_;\-\.\(\)\[\]\\]+$"},
        "version": _STRING_OR_NUMBER,
        "license-id": {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9.+-]*$"},
        "license": {
            "oneOf": [
                {"$ref": "#/definitions/license-id"},
                {"type": "array", "minItems": 1, "uniqueItems": True, "items": {"$ref": "#/definitions/license-id"}},
            ]
        },
        "person": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                **{
                    key: _STRING
                    for key in (
                        *_CONTACT_FIELDS,
                        "affiliation",
                        "family-names",
                        "given-names",
                        "name-particle",
                        "name-suffix",
                    )
                },
                "country": {"type": "string", "pattern": "^[A-Z]{2}$"},
                "email": {"type": "string", "pattern": r"^[\S]+@[\S]+\.[\S]{2,}$"},
                "orcid": {
                    "type": "string",
                    "pattern": "https://orcid\\.org/[0-9]{4}-[0-9]{4}-[0-9]{4}-[0-9]{3}[0-9X]{1}",
                },
                "post-code": _STRING_OR_NUMBER,
                "website": {"$ref": "#/definitions/url"},
            },
        },
        "entity": {
            "type": "object",
            "additionalProperties": False,
            "required": ["name"],
            "properties": {
                **{key: _STRING for key in (*_CONTACT_FIELDS, "location", "name")},
                "country": {"type": "string", "pattern": "^[A-Z]{2}$"},
                "date-end": {"$ref": "#/definitions/date"},
                "date-start": {"$ref": "#/definitions/date"},
                "email": {"type": "string", "pattern": r"^[\S]+@[\S]+\.[\S]{2,}$"},
                "orcid": {
                    "type": "string",
                    "pattern": "https://orcid\\.org/[0-9]{4}-[0-9]{4}-[0-9]{4}-[0-9]{3}[0-9X]{1}",
                },
                "post-code": _STRING_OR_NUMBER,
                "website": {"$ref": "#/definitions/url"},
            },
        },
        "identifier": {
            "anyOf": [
                _identifier("doi", {"$ref": "#/definitions/doi"}),
                _identifier("url", {"$ref": "#/definitions/url"}),
                _identifier("swh", {"type": "string", "pattern": "^swh:1:(snp|rel|rev|dir|cnt):[0-9a-fA-F]{40}$"}),
                _identifier("other", _STRING),
            ]
        },
        "reference": _REFERENCE,
    },
    "properties": {
        "abstract": _STRING,
        "authors": _PEOPLE,
        "cff-version": {"type": "string", "pattern": r"^1\.2\.0$"},
        "commit": _STRING,
        "contact": _PEOPLE,
        "date-released": {"$ref": "#/definitions/date"},
        "doi": {"$ref": "#/definitions/doi"},
        "identifiers": _IDENTIFIERS,
        "keywords": _UNIQUE_STRINGS,
        "license": {"$ref": "#/definitions/license"},
        "license-url": {"$ref": "#/definitions/url"},
        "message": _STRING,
        "preferred-citation": {"$ref": "#/definitions/reference"},
        "references": {
            "type": "array",
            "minItems": 1,
            "uniqueItems": True,
            "items": {"$ref": "#/definitions/reference"},
        },
        "repository": {"$ref": "#/definitions/url"},
        "repository-artifact": {"$ref": "#/definitions/url"},
        "repository-code": {"$ref": "#/definitions/url"},
        "title": _STRING,
        "type": {"type": "string", "enum": ["dataset", "software"]},
        "url": {"$ref": "#/definitions/url"},
        "version": {"$ref": "#/definitions/version"},
    },
}


def _dates_as_strings(node: Any) -> Any:
    """The CFF schema asks validators to read YAML dates as strings."""
    if isinstance(node, dict):
        return {k: _dates_as_strings(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_dates_as_strings(v) for v in node]
    return node.isoformat() if isinstance(node, datetime.date) else node


def cff_errors(document: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft7Validator(CFF_SCHEMA)
    return [
        f"{'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}"
        for e in validator.iter_errors(_dates_as_strings(document))
    ]


@pytest.fixture(scope="module")
def cff() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "CITATION.cff").read_text(encoding="utf-8"))


def test_the_subset_schema_is_a_valid_draft7_schema():
    jsonschema.Draft7Validator.check_schema(CFF_SCHEMA)


def test_citation_cff_is_valid_cff_1_2_0(cff):
    assert not cff_errors(cff), "\n".join(cff_errors(cff))


@pytest.mark.parametrize(
    "change, complaint",
    [
        (lambda d: d.pop("title"), "'title' is a required property"),
        (lambda d: d.update({"cff-version": "1.1.0"}), "does not match"),
        (lambda d: d.update({"type": "book"}), "is not one of"),
        (lambda d: d.update({"date-released": "27 November 2026"}), "does not match"),
        (lambda d: d.update({"repository-code": "github.com/x/y"}), "does not match"),
        (lambda d: d.update({"authors": []}), "should be non-empty"),
        (lambda d: d.update({"author": d["authors"]}), "Additional properties"),
        (lambda d: d["references"][0].update({"year": "2021"}), "is not of type 'integer'"),
        (lambda d: d["references"][0].update({"type": "paper"}), "is not one of"),
        (lambda d: d["preferred-citation"].pop("authors"), "'authors' is a required property"),
    ],
)
def test_the_schema_rejects_broken_files(cff, change, complaint):
    broken = yaml.safe_load(yaml.safe_dump(cff))
    change(broken)
    errors = cff_errors(broken)
    assert any(complaint in e for e in errors), errors


def test_citation_cff_agrees_with_the_repository(cff):
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert str(cff["version"]) == project["version"] == noether_lib.__version__
    assert str(cff["preferred-citation"]["version"]) == str(cff["version"])
    assert cff["repository-code"] == config["repository"]["url"] == cff["preferred-citation"]["url"]
    assert int(str(cff["date-released"])[:4]) == cff["preferred-citation"]["year"]


def test_the_paper_reference_agrees_with_the_bibliography(cff):
    entry = citing.bib_entry(ROOT / "references.bib", "tanaka2021noether")
    paper = next(r for r in cff["references"] if "Noether" in r["title"])
    assert f"{paper['start']}--{paper['end']}" in entry
    assert f"year      = {{{paper['year']}}}" in entry
    assert "Tanaka, Hidenori and Kunin, Daniel" in entry
    assert [a["family-names"] for a in paper["authors"]] == ["Tanaka", "Kunin"]


def test_book_bibtex_parses_and_names_the_version(cff):
    from pybtex.database import parse_string

    meta = citing.book_metadata(ROOT / "CITATION.cff")
    entry = parse_string(citing.book_bibtex(meta), "bibtex").entries["noether_book"]
    assert entry.type == "software"
    assert entry.fields["version"] == str(cff["version"])
    assert entry.fields["url"] == cff["repository-code"]
    assert "\\&" in entry.fields["title"] or "&" not in meta["title"]
    assert [str(p) for p in entry.persons["author"]] == ["{The noether-book authors}"]


def test_figure_citation_names_the_book_version_and_label(cff):
    meta = citing.book_metadata(ROOT / "CITATION.cff")
    text = citing.figure_citation(meta, "fig-ch1-example")
    assert f"version {cff['version']}" in text and "figure fig-ch1-example" in text and cff["repository-code"] in text


def test_bib_entry_is_verbatim_and_complains_about_unknown_keys(tmp_path):
    bib = tmp_path / "x.bib"
    bib.write_text("@article{a,\n  title = {{Nested} braces},\n  year = {2020}\n}\n\n@book{b, title={B}}\n")
    assert citing.bib_entry(bib, "a") == "@article{a,\n  title = {{Nested} braces},\n  year = {2020}\n}"
    assert citing.bib_entry(bib, "b") == "@book{b, title={B}}"
    with pytest.raises(KeyError, match="missing"):
        citing.bib_entry(bib, "missing")


def test_the_cite_page_comes_right_after_the_preface():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    first_part = toc["parts"][0]
    assert first_part["chapters"][0]["file"] == "book/cite"
    text = (ROOT / "book" / "cite.md").read_text(encoding="utf-8")
    assert "```{book-bibtex}\n```" in text and "```{book-bibtex} tanaka2021noether" in text
    assert not re.search(r"version\s*=\s*\{\d", text), "the cite page must not type the version"
