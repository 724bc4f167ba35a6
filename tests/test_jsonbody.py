"""JSON bodies: orjson where it can, the json module where it refuses; the same JSON either way."""

from __future__ import annotations

import json

import pytest

from registry import errors, jsonbody


@pytest.mark.parametrize(
    "value",
    [
        {"errors": [{"code": "NAME_INVALID", "message": "invalid", "detail": {"name": "a/B"}}]},
        {"token": "x" * 700, "expires_in": 300, "issued_at": "2026-11-27T08:00:00Z"},
        {"tags": ["é", "ü/🚢"], "n": None, "ok": True},
    ],
)
def test_bodies_are_the_json_of_their_value(value: object) -> None:
    assert json.loads(jsonbody.dumps(value)) == value


def test_what_orjson_refuses_still_becomes_json() -> None:
    """Integers beyond 64 bits and non-string keys: the json module takes them."""
    body = jsonbody.dumps({"offset": 2**70, 7: "seven"})
    assert json.loads(body) == {"offset": 2**70, "7": "seven"}


def test_an_error_with_a_huge_number_in_its_detail_is_still_an_oci_error() -> None:
    response = errors.SIZE_INVALID({"received": 2**80}).to_response()
    assert response.status_code == 400
    assert json.loads(response.body)["errors"][0]["detail"] == {"received": 2**80}
