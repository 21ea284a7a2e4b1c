"""`predict --precision` and `--device auto`."""

from __future__ import annotations

import json

import pytest
import torch

import ovar
from ovar.cli import main
from ovar.errors import OvarError
from videogen import make_video

LABELS = ["surfing water", "skiing", "playing guitar", "juggling"]


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return make_video(tmp_path_factory.mktemp("v") / "clip.mp4", num_frames=12, fps=12, size=(72, 64))


@pytest.fixture(scope="module")
def model():
    return ovar.load_model("tiny", "none")


def _scores(result):
    return {p.label: p.score for p in result.predictions}


def test_fp32_is_the_cpu_default_and_bf16_is_close(video, model):
    default = _scores(ovar.predict(video, LABELS, model=model))
    fp32 = _scores(ovar.predict(video, LABELS, model=model, precision="fp32"))
    bf16 = _scores(ovar.predict(video, LABELS, model=model, precision="bf16"))
    assert fp32 == default  # "auto" on a CPU is fp32, bit for bit
    assert bf16 == pytest.approx(fp32, abs=0.05)
    assert bf16 != fp32  # bf16 really ran: its rounding shows in the scores


def test_bad_precisions_are_user_errors(video, model, capsys):
    with pytest.raises(OvarError, match="precision: expected one of"):
        ovar.predict(video, LABELS, model=model, precision="fp8")
    if not torch.cuda.is_available():
        code = main(["predict", str(video), "--labels", ", ".join(LABELS), "--model", "tiny", "--pretrained", "none",
                     "--precision", "fp16", "--device", "cpu"])
        assert code == 2 and "--precision: fp16 needs a GPU" in capsys.readouterr().err


def test_device_auto(video, model, capsys):
    capsys.readouterr()
    code = main(["predict", str(video), "--labels", ", ".join(LABELS), "--model", "tiny", "--pretrained", "none",
                 "--device", "auto", "--precision", "fp32", "--format", "json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    expected = _scores(ovar.predict(video, LABELS, model=model.to("cuda" if torch.cuda.is_available() else "cpu"),
                                    precision="fp32"))
    assert {p["label"]: p["score"] for p in out[0]["predictions"]} == pytest.approx(expected, abs=1e-6)
