"""List files: the comma, space, frames and video formats, detection, errors, writing."""

from __future__ import annotations

from pathlib import Path

import pytest

from ovar.data.lists import ListFormatError, detect_format, parse_list, read_list, resolve, write_list
from ovar.data.records import VideoRecord
from ovar.errors import OvarError


def write(tmp_path: Path, text: str, name: str = "list.txt") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def error_of(path: Path, **kwargs) -> str:
    with pytest.raises(ListFormatError) as info:
        read_list(path, **kwargs)
    message = str(info.value)
    assert "\n" not in message and message.startswith(str(path))
    return message


def test_error_type_is_an_ovar_error():
    assert issubclass(ListFormatError, OvarError)


def test_comma_two_and_three_fields(tmp_path):
    path = write(tmp_path, "val/a/x.mp4,3\ntrain/b/y.mp4, 0\nc/z.avi,ignored,7\n")
    assert read_list(path) == [VideoRecord("val/a/x.mp4", 3), VideoRecord("train/b/y.mp4", 0),
                               VideoRecord("c/z.avi", 7)]


def test_space_format_and_path_with_spaces(tmp_path):
    path = write(tmp_path, "Class/v_1.avi 0\nmy videos/clip one.mp4 12\n")
    assert read_list(path) == [VideoRecord("Class/v_1.avi", 0), VideoRecord("my videos/clip one.mp4", 12)]
    assert read_list(path, fmt="video") == read_list(path, fmt="space")


def test_frames_format(tmp_path):
    path = write(tmp_path, "--07WQ2iBlw 272 166\nApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01 121 0\n")
    assert read_list(path) == [VideoRecord("--07WQ2iBlw", 166, 272),
                               VideoRecord("ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01", 0, 121)]


def test_comments_blank_lines_crlf_and_bom(tmp_path):
    path = tmp_path / "l.csv"
    path.write_bytes("\ufeff# header comment\r\n\r\na.mp4,1\r\n   \r\n  # indented comment\r\nb.mp4,2\r\n".encode())
    assert read_list(path) == [VideoRecord("a.mp4", 1), VideoRecord("b.mp4", 2)]


@pytest.mark.parametrize("line, expected", [
    ("a.mp4,3", "comma"),
    ("a.mp4,x,3", "comma"),
    ("a.mp4 3", "space"),
    ("dir 120 3", "frames"),
    ("my dir 120 3", "frames"),
    ("my clip2.mp4 3", "space"),
    ("Hello, world.mp4 3", "space"),  # a comma inside a space-separated path
    ("a,b", "comma"),
])
def test_detect_format(line, expected):
    assert detect_format(line) == expected


def test_override_beats_detection(tmp_path):
    path = write(tmp_path, "clip 12 3\n")
    assert read_list(path) == [VideoRecord("clip", 3, 12)]
    assert read_list(path, fmt="space") == [VideoRecord("clip 12", 3)]


def test_single_field_is_label_zero_only_when_comma_is_forced(tmp_path):
    path = write(tmp_path, "a.mp4,2\nb.mp4\n")
    assert read_list(path, fmt="comma") == [VideoRecord("a.mp4", 2), VideoRecord("b.mp4", 0)]
    message = error_of(path)
    assert "list.txt:2: expected 'path,label'" in message and "fmt='comma'" in message


def test_single_field_alone_is_malformed_in_auto(tmp_path):
    assert "list.txt:1: expected 'path label'" in error_of(write(tmp_path, "b.mp4\n"))


def test_space_list_read_as_comma_is_an_error(tmp_path):
    message = error_of(write(tmp_path, "name.avi 0\n"), fmt="comma")
    assert "list.txt:1:" in message and "fmt='space'" in message


def test_comma_list_read_as_space_is_an_error(tmp_path):
    assert "list.txt:1: expected 'path label'" in error_of(write(tmp_path, "a.mp4,3\n"), fmt="space")


def test_too_many_commas(tmp_path):
    assert "list.txt:2: expected 'path,label'" in error_of(write(tmp_path, "a.mp4,1\na,b,c,4\n"))


def test_frames_forced_on_two_fields(tmp_path):
    assert "list.txt:1: expected 'dir num_frames label'" in error_of(write(tmp_path, "d 3\n"), fmt="frames")


@pytest.mark.parametrize("text, line, words", [
    ("a.mp4,1\nb.mp4,x\n", 2, "label 'x' is not an integer"),
    ("a.mp4,1.0\n", 1, "label '1.0' is not an integer"),
    ("a.mp4,\n", 1, "label '' is not an integer"),
    ("# c\n\na.mp4,-1\n", 3, "label -1 is negative"),
    ("a.mp4 two\n", 1, "label 'two' is not an integer"),
])
def test_bad_labels_name_file_and_line(tmp_path, text, line, words):
    message = error_of(write(tmp_path, text))
    assert f"list.txt:{line}: {words}" in message


def test_label_out_of_range(tmp_path):
    path = write(tmp_path, "a.mp4,0\nb.mp4,4\nc.mp4,3\n")
    assert len(read_list(path, num_classes=5)) == 3
    message = error_of(path, num_classes=4)
    assert "list.txt:2: label 4 is out of range for 4 classes (0..3)" in message


def test_num_frames_must_be_an_integer(tmp_path):
    message = error_of(write(tmp_path, "dir x 3\n"), fmt="frames")
    assert "list.txt:1: num_frames 'x' is not an integer" in message


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n  \n"])
def test_empty_list(tmp_path, text):
    assert "no records" in error_of(write(tmp_path, text))


def test_missing_file_and_unknown_format(tmp_path):
    assert "not found" in error_of(tmp_path / "missing.txt")
    assert "unknown list format 'tsv'" in error_of(write(tmp_path, "a 1\n"), fmt="tsv")


def test_parse_list_names_its_source():
    with pytest.raises(ListFormatError, match=r"^splits/x\.csv:1: label 'y'"):
        parse_list("a,y\n", source="splits/x.csv")


def test_resolve(tmp_path):
    assert resolve(VideoRecord("val/a.mp4", 0), tmp_path) == tmp_path / "val" / "a.mp4"
    assert resolve(VideoRecord("/abs/a.mp4", 0), tmp_path, allow_outside=True) == Path("/abs/a.mp4")
    assert resolve(VideoRecord("/abs/a.mp4", 0)) == Path("/abs/a.mp4")  # no root: as written
    assert resolve(VideoRecord("val/a.mp4", 0)) == Path("val/a.mp4")


@pytest.mark.parametrize("path", ["/abs/a.mp4", "../b.mp4", "val/../../c.mp4", "~/d.mp4"])
def test_path_outside_the_root_is_refused(tmp_path, path):
    root = tmp_path / "data"
    with pytest.raises(ListFormatError) as err:
        resolve(VideoRecord(path, 0), root)
    assert path in str(err.value) and str(root) in str(err.value) and "outside the data root" in str(err.value)
    assert resolve(VideoRecord(path, 0), root, allow_outside=True).name == Path(path).name


def test_paths_that_stay_inside_the_root_are_kept(tmp_path):
    root = tmp_path / "data"
    assert resolve(VideoRecord("a/../b.mp4", 0), root) == root / "a" / ".." / "b.mp4"
    assert resolve(VideoRecord(str(root / "x" / "c.mp4"), 0), root) == root / "x" / "c.mp4"


@pytest.mark.parametrize("text, line, fields", [
    ("a 1 2 3\n", 1, 4),                    # detected as frames: 'a 1' is no folder name
    ("ok.mp4 2\nb.mp4 30 1\n", 2, 3),       # a frames line inside a space list
    ("d 30 1\ne 7 8 9 2\n", 2, 5),          # one field too many in a frames list
])
def test_wrong_number_of_fields_names_file_and_line(tmp_path, text, line, fields):
    path = write(tmp_path, text)
    message = error_of(path)
    assert f"list.txt:{line}: expected" in message and f"got {fields} fields" in message


def test_a_path_with_spaces_still_reads(tmp_path):
    path = write(tmp_path, "My Videos/clip one.mp4 3\nplaying guitar/x.mp4 1\n")
    assert read_list(path) == [VideoRecord("My Videos/clip one.mp4", 3), VideoRecord("playing guitar/x.mp4", 1)]


@pytest.mark.parametrize("fmt, expected", [
    ("comma", "a/x.mp4,3\nb.mp4,0\n"),
    ("space", "a/x.mp4 3\nb.mp4 0\n"),
    ("frames", "a/x.mp4 10 3\nb.mp4 7 0\n"),
])
def test_write_list_round_trip(tmp_path, fmt, expected):
    records = [VideoRecord("a/x.mp4", 3, 10), VideoRecord("b.mp4", 0, 7)]
    path = write_list(records, tmp_path / "out" / f"{fmt}.txt", fmt)
    assert path.read_text() == expected
    back = read_list(path, fmt=fmt)
    assert [(r.path, r.label) for r in back] == [("a/x.mp4", 3), ("b.mp4", 0)]
    if fmt == "frames":
        assert back == records


@pytest.mark.parametrize("record, fmt, words", [
    (VideoRecord("a,b.mp4", 1), "comma", "contains a comma"),
    (VideoRecord("a b.mp4", 1), "space", "contains whitespace"),
    (VideoRecord("#a.mp4", 1), "comma", "cannot be written"),
    (VideoRecord("a.mp4", 1), "frames", "no num_frames"),
    (VideoRecord("a.mp4", -2), "comma", "negative"),
])
def test_write_list_refuses_what_would_read_back_differently(tmp_path, record, fmt, words):
    with pytest.raises(ListFormatError, match=words):
        write_list([record], tmp_path / "l.txt", fmt)
    assert not (tmp_path / "l.txt").exists()
