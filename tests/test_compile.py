"""``--compile``: the compiled video encoder scores like the eager one; no compiler is a user error."""

from __future__ import annotations

import pytest
import torch

import ovar
from ovar.cli import main
from videogen import make_video

LABELS = ["surfing water", "skiing", "playing guitar", "juggling"]


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return make_video(tmp_path_factory.mktemp("v") / "clip.mp4", num_frames=12, fps=12, size=(72, 64))


def test_without_a_cxx_compiler_compile_is_a_one_line_error(video, monkeypatch, capsys):
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.delenv("CXX", raising=False)
    code = main(["predict", str(video), "--labels", ", ".join(LABELS), "--model", "tiny", "--pretrained", "none",
                 "--device", "cpu", "--compile"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip().splitlines() == ["ovar: error: --compile on CPU needs a C++ compiler "
                                        "(g++, c++ or clang++ on PATH, or $CXX)"]


@pytest.mark.slow
def test_compiled_encoder_gives_the_eager_scores(video):
    model = ovar.load_model("tiny", "none", device="cpu")
    eager = {p.label: p.score for p in ovar.predict(video, LABELS, model=model).predictions}
    compiled = {p.label: p.score for p in ovar.predict(video, LABELS, model=model, compile=True).predictions}
    assert getattr(model.encode_video, "ovar_compiled", False)
    assert compiled == pytest.approx(eager, abs=1e-5)
    with torch.no_grad():  # compiled in place: a second call reuses it
        again = ovar.predict(video, LABELS, model=model, compile=True)
    assert {p.label: p.score for p in again.predictions} == pytest.approx(eager, abs=1e-5)


def test_eval_compile_without_a_compiler_stops_before_any_work(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.delenv("CXX", raising=False)
    out = tmp_path / "out"
    code = main(["eval", "--protocol", "closed", "--root", str(tmp_path), "--out", str(out), "--list",
                 str(tmp_path / "val.txt"), "--classes", "ucf101", "--model", "tiny", "--pretrained", "none",
                 "--device", "cpu", "--compile"])
    assert code == 2
    assert capsys.readouterr().err.strip() == ("ovar: error: --compile on CPU needs a C++ compiler "
                                               "(g++, c++ or clang++ on PATH, or $CXX)")
    assert not out.exists()
