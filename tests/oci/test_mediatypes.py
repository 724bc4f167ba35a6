"""registry.oci.mediatypes: reading Accept headers and deciding what a client can take."""

from __future__ import annotations

import pytest

from registry.oci import mediatypes as mt


def test_no_header_lines_accept_nothing_in_particular() -> None:
    assert mt.parse_accept([]) == set()


def test_one_type_per_header_line() -> None:
    # Docker sends one header line per media type.
    assert mt.parse_accept([mt.OCI_MANIFEST, mt.DOCKER_MANIFEST, mt.DOCKER_LIST]) == {
        mt.OCI_MANIFEST,
        mt.DOCKER_MANIFEST,
        mt.DOCKER_LIST,
    }


def test_comma_separated_list_on_one_line() -> None:
    # containerd sends one comma-separated line.
    line = f"{mt.OCI_INDEX}, {mt.OCI_MANIFEST},{mt.DOCKER_LIST} ,  {mt.DOCKER_MANIFEST}"
    assert mt.parse_accept([line]) == {
        mt.OCI_INDEX,
        mt.OCI_MANIFEST,
        mt.DOCKER_LIST,
        mt.DOCKER_MANIFEST,
    }


def test_several_lines_each_with_lists() -> None:
    lines = [f"{mt.OCI_INDEX}, {mt.OCI_MANIFEST}", f"{mt.DOCKER_MANIFEST},{mt.DOCKER_LIST}"]
    assert mt.parse_accept(lines) == {
        mt.OCI_INDEX,
        mt.OCI_MANIFEST,
        mt.DOCKER_MANIFEST,
        mt.DOCKER_LIST,
    }


def test_parameters_are_dropped() -> None:
    line = f"{mt.OCI_MANIFEST};q=0.5, {mt.DOCKER_MANIFEST} ; q=0.9 ; charset=utf-8, */*;q=0.1"
    assert mt.parse_accept([line]) == {mt.OCI_MANIFEST, mt.DOCKER_MANIFEST, "*/*"}


def test_media_types_are_lowercased() -> None:
    assert mt.parse_accept(["Application/VND.OCI.Image.Manifest.v1+JSON"]) == {mt.OCI_MANIFEST}


def test_empty_items_are_ignored() -> None:
    assert mt.parse_accept(["", " ", ",,", f" , {mt.OCI_INDEX} ,", ";q=1"]) == {mt.OCI_INDEX}


def test_duplicates_collapse() -> None:
    assert mt.parse_accept([mt.OCI_INDEX, mt.OCI_INDEX.upper(), f"{mt.OCI_INDEX};q=1"]) == {
        mt.OCI_INDEX
    }


@pytest.mark.parametrize("stored", sorted(mt.SUPPORTED))
def test_no_accept_header_takes_anything(stored: str) -> None:
    assert mt.acceptable(stored, set())


@pytest.mark.parametrize("wildcard", ["*/*", "application/*"])
@pytest.mark.parametrize("stored", sorted(mt.SUPPORTED))
def test_wildcards_take_anything(stored: str, wildcard: str) -> None:
    assert mt.acceptable(stored, {mt.DOCKER_MANIFEST, wildcard})


def test_listed_type_is_acceptable() -> None:
    accepted = mt.parse_accept([f"{mt.OCI_MANIFEST}, {mt.OCI_INDEX}"])
    assert mt.acceptable(mt.OCI_MANIFEST, accepted)
    assert mt.acceptable(mt.OCI_INDEX, accepted)


def test_unlisted_type_is_not_acceptable() -> None:
    accepted = mt.parse_accept([mt.DOCKER_MANIFEST])
    assert not mt.acceptable(mt.OCI_MANIFEST, accepted)
    assert not mt.acceptable(mt.DOCKER_LIST, accepted)
    assert not mt.acceptable(mt.OCI_INDEX, accepted)


def test_acceptable_after_parsing_parameters_and_case() -> None:
    accepted = mt.parse_accept([f"{mt.OCI_INDEX.upper()};q=0.5"])
    assert mt.acceptable(mt.OCI_INDEX, accepted)
    assert not mt.acceptable(mt.OCI_MANIFEST, accepted)


def test_type_groups() -> None:
    assert {mt.OCI_MANIFEST, mt.DOCKER_MANIFEST} == mt.IMAGE_MANIFESTS
    assert {mt.OCI_INDEX, mt.DOCKER_LIST} == mt.INDEXES
    assert mt.SUPPORTED == mt.IMAGE_MANIFESTS | mt.INDEXES
    assert not {mt.DOCKER_SCHEMA1, mt.DOCKER_SCHEMA1_SIGNED, mt.OCI_EMPTY} & mt.SUPPORTED
