"""convert.batch.plan: filters over index fields, planned names, fingerprints."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from convert.batch.index import SERIES_COLUMNS
from convert.batch.plan import (Filter, fingerprint_of, inputs_digest, options_fingerprint, parse_filter,
                                selected)
from convert.errors import ConvertError


@settings(max_examples=200, deadline=None)
@given(field=st.sampled_from(SERIES_COLUMNS), op=st.sampled_from(["=", "!="]),
       value=st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=20))
def test_text_filters_parse_back_to_their_parts(field: str, op: str, value: str) -> None:
    parsed = parse_filter(f"{field}{op}{value}")
    assert (parsed.field, parsed.op, parsed.value) == (field, op, value.strip())


@settings(max_examples=200, deadline=None)
@given(op=st.sampled_from([">", ">=", "<", "<="]), bound=st.integers(-1000, 1000),
       value=st.one_of(st.none(), st.integers(-1000, 1000), st.floats(-1e3, 1e3, allow_nan=False)))
def test_numeric_filters_compare_numbers(op: str, bound: int, value: float | None) -> None:
    f = parse_filter(f"slices{op}{bound}")
    expected = value is not None and {">": value > bound, ">=": value >= bound, "<": value < bound,
                                      "<=": value <= bound}[op]
    assert f.matches({"slices": value}) == expected


def test_text_filters_are_case_insensitive_wildcards_and_empty_never_matches() -> None:
    assert parse_filter("series_description=*t1*").matches({"series_description": "Ax T1 MPRAGE"})
    assert not parse_filter("series_description=*t2*").matches({"series_description": "Ax T1 MPRAGE"})
    assert parse_filter("modality=ct").matches({"modality": "CT"})
    assert not parse_filter("modality=*").matches({"modality": ""})
    assert parse_filter("modality!=CT").matches({"modality": None})
    assert parse_filter("modality!=CT").matches({"modality": "MR"})
    assert not parse_filter("modality!=CT").matches({"modality": "CT"})


def test_include_needs_every_expression_and_exclude_any() -> None:
    row = {"modality": "CT", "slices": 40}
    ct, thick, mr = Filter("modality", "=", "CT"), Filter("slices", ">=", "20"), Filter("modality", "=", "MR")
    assert selected(row, [ct, thick], [])
    assert not selected(row, [ct, mr], [])
    assert not selected(row, [ct], [thick])
    assert selected(row, [], [mr])


@pytest.mark.parametrize("text, words", [
    ("modality", "FIELD=VALUE"), ("colour=red", "unknown field 'colour'"), ("slices>=many", "give a number"),
    ("=CT", "FIELD=VALUE")])
def test_bad_filters_say_how_to_write_one(text: str, words: str) -> None:
    with pytest.raises(ConvertError, match=words):
        parse_filter(text)


def test_fingerprints_are_stable_across_runs_and_change_with_options() -> None:
    from convert.process.pipeline import from_options

    a = options_fingerprint({"to": "nifti-gz", "process": from_options(hu=True)})
    assert a == options_fingerprint({"to": "nifti-gz", "process": from_options(hu=True)})
    assert a != options_fingerprint({"to": "nifti-gz", "process": from_options(hu=True, reorient="RAS")})
    assert a != options_fingerprint({"to": "nrrd", "process": from_options(hu=True)})
    # a user's function has no stable description: its jobs count as changed (the safe side)
    assert "0x" in str(fingerprint_of(lambda v: v))


def test_deidentifier_fingerprint_names_the_key_only_by_a_check_value() -> None:
    from convert.anonymize.deidentifier import Deidentifier

    key = b"k" * 32
    one, same, other = Deidentifier(key), Deidentifier(key), Deidentifier(b"j" * 32)
    assert fingerprint_of(one) == fingerprint_of(same) != fingerprint_of(other)
    assert key.decode() not in str(fingerprint_of(one))


def test_inputs_digest_follows_size_and_mtime_not_order(tmp_path: Path) -> None:
    a, b = tmp_path / "a.dcm", tmp_path / "b.dcm"
    a.write_bytes(b"1" * 10)
    b.write_bytes(b"2" * 10)
    first = inputs_digest([a, b], tmp_path, "f")
    assert inputs_digest([b, a], tmp_path, "f") == first
    assert inputs_digest([a, b], tmp_path, "g") != first
    stat = os.stat(a)
    os.utime(a, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert inputs_digest([a, b], tmp_path, "f") != first


def test_dask_tasks_group_small_series_and_keep_large_ones_alone() -> None:
    from types import SimpleNamespace

    from convert.batch.run import dask_tasks

    jobs = [SimpleNamespace(files=n) for n in (100, 100, 900, 5000, 10, 10, 10)]
    assert dask_tasks(jobs) == [[0, 1], [2], [3], [4, 5, 6]]  # type: ignore[arg-type]
    assert dask_tasks([SimpleNamespace(files=1)] * 70, most=32) == [list(range(32)), list(range(32, 64)),
                                                                    list(range(64, 70))]  # type: ignore[arg-type]
    assert dask_tasks([]) == []
