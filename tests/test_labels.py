"""Class lists (CSV, JSON, one per line), their errors, and humanize()."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import shared_dir
from ovar.data import labels
from ovar.data.labels import humanize, parse_class_names, read_class_names
from ovar.errors import LabelError


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def error_of(path: Path) -> str:
    with pytest.raises(LabelError) as info:
        read_class_names(path)
    message = str(info.value)
    assert "\n" not in message and message.startswith(str(path))
    return message


# --- CSV --------------------------------------------------------------------------------

def test_csv_with_header_in_any_order(tmp_path):
    path = write(tmp_path, "c.csv", "id,name\n2,surfing\n0,abseiling\n1,air drumming\n")
    assert read_class_names(path) == ["abseiling", "air drumming", "surfing"]


def test_csv_crlf_bom_quotes_and_commas_in_names(tmp_path):
    path = tmp_path / "c.csv"
    path.write_bytes('\ufeffid,name\r\n0,"Putting something, something on the table"\r\n'
                     '1,Removing something, revealing something behind\r\n\r\n'.encode())
    assert read_class_names(path) == ["Putting something, something on the table",
                                      "Removing something, revealing something behind"]


def test_csv_without_header(tmp_path):
    assert read_class_names(write(tmp_path, "c.csv", "0,a\n1,b\n")) == ["a", "b"]


def test_csv_duplicate_index(tmp_path):
    message = error_of(write(tmp_path, "c.csv", "id,name\n0,a\n1,b\n1,c\n"))
    assert "c.csv:4: duplicate class index 1 (first on line 3)" in message


def test_csv_missing_index(tmp_path):
    message = error_of(write(tmp_path, "c.csv", "id,name\n0,a\n1,b\n3,d\n"))
    assert "class index 2 is missing" in message


def test_csv_duplicate_name_case_insensitive(tmp_path):
    message = error_of(write(tmp_path, "c.csv", "id,name\n0,Archery\n1,bowling\n2,archery\n"))
    assert "c.csv:4: duplicate class name 'archery' (first at line 2)" in message


@pytest.mark.parametrize("text, words", [
    ("id,name\nx,a\n", "c.csv:2: class index 'x' is not a non-negative integer"),
    ("id,name\n-1,a\n", "c.csv:2: class index '-1'"),
    ("id,name\n0,\n", "c.csv:2: empty class name"),
    ("id,name\n0 a\n", "c.csv:2: expected 'id,name'"),
    ("index,label\n0,a\n", "c.csv:1: class index 'index'"),
    ("id,name\n", "the class list is empty"),
    ("id,name\nid,name\n", "c.csv:2: class index 'id'"),
])
def test_csv_errors(tmp_path, text, words):
    assert words in error_of(write(tmp_path, "c.csv", text))


# --- JSON -------------------------------------------------------------------------------

def test_json_object_and_list(tmp_path):
    obj = write(tmp_path, "o.json", json.dumps({"1": "skiing", "0": "surfing", "2": "dancing"}))
    assert read_class_names(obj) == ["surfing", "skiing", "dancing"]
    lst = write(tmp_path, "l.json", json.dumps(["surfing", "skiing"]))
    assert read_class_names(lst) == ["surfing", "skiing"]


@pytest.mark.parametrize("text, words", [
    ('{"0": "a", "0": "b"}', 'duplicate class index "0"'),
    ('{"0": "a", "00": "b"}', "duplicate class index 0"),
    ('{"0": "a", "2": "b"}', "class index 1 is missing"),
    ('{"0": "a", "x": "b"}', 'key "x" is not a class index'),
    ('{"0": "a", "1": "A"}', "class 1: duplicate class name 'A' (first at class 0)"),
    ('["a", "b", "a"]', "class 2: duplicate class name 'a'"),
    ('{"0": 5}', "class 0 has no name"),
    ('"just a string"', "expected a JSON object"),
    ('{"0": "a",\n "1": }', "o.json:2: invalid JSON"),
    ("{}", "the class list is empty"),
])
def test_json_errors(tmp_path, text, words):
    assert words in error_of(write(tmp_path, "o.json", text))


# --- one name per line ------------------------------------------------------------------

def test_lines(tmp_path):
    path = write(tmp_path, "k.txt", "abseiling\n  acting in play \nadjusting glasses\n\n\n")
    assert read_class_names(path) == ["abseiling", "acting in play", "adjusting glasses"]


def test_lines_errors(tmp_path):
    assert "k.txt:2: empty class name" in error_of(write(tmp_path, "k.txt", "a\n\nb\n"))
    assert "k.txt:3: duplicate class name 'a' (first at line 1)" in error_of(write(tmp_path, "k.txt", "a\nb\na\n"))
    assert "empty" in error_of(write(tmp_path, "k.txt", ""))
    assert "not found" in error_of(tmp_path / "missing.txt")


def test_repeats_allowed_only_on_request():
    assert parse_class_names("a\nb\na\n", unique=False) == ["a", "b", "a"]
    with pytest.raises(LabelError):
        parse_class_names("a\nb\na\n")


def test_read_descriptions_is_re_exported():
    from ovar.text.descriptions import read_descriptions

    assert labels.read_descriptions is read_descriptions


# --- humanize ---------------------------------------------------------------------------

@pytest.mark.parametrize("name, expected", [
    ("ApplyEyeMakeup", "apply eye makeup"),
    ("brush_hair", "brush hair"),
    ("YoYo", "yo yo"),
    ("PlayingDaf", "playing daf"),
    ("SkyDiving", "sky diving"),
    ("PommelHorse", "pommel horse"),
    ("Archery", "archery"),
    ("TVShow", "tv show"),
    ("BMX", "bmx"),
    ("Top10Moves", "top 10 moves"),
    ("ride_BMXBike", "ride bmx bike"),
    ("Rock-paper-scissors", "rock-paper-scissors"),
    ("abseiling", "abseiling"),
    ("acting in play", "acting in play"),
    ("backflip (human)", "backflip (human)"),
    ("Applying sunscreen", "Applying sunscreen"),
    ("Approaching something with your camera", "Approaching something with your camera"),
])
def test_humanize(name, expected):
    assert humanize(name) == expected


def test_humanize_matches_open_vclip_ucf101_names():
    """Open-VCLIP split the UCF101 CamelCase names into words by hand; we agree except
    'YoYo', which they wrote as one word."""
    data = shared_dir() / "data"
    if not data.is_dir():
        pytest.skip("shared data folder not available")
    camel = read_class_names(data / "labels" / "ucf101.csv")
    spaced = json.loads((data / "splits" / "cross" / "ucf101-index2cls.json").read_text())
    differ = [name for index, name in enumerate(camel) if humanize(name) != spaced[str(index)].lower()]
    assert len(camel) == 101 and differ == ["YoYo"]
