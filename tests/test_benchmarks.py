"""Every benchmark runs: each script, at its smallest size, exits 0 and prints its comparison.

The figures are not checked (speed is measured by running the benchmarks, not in tests);
what is checked is that a reader who runs ``python benchmarks/NAME.py`` gets a table, so an
API change that breaks a benchmark fails here instead of at the next measurement.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import reference_dir

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"

# script -> (smallest arguments, a text its table prints)
RUNS = {
    "bench_train.py": (["--batch", "2", "--frames", "2", "--steps", "1"], "clips/s"),
    "bench_iwo.py": (["--batch", "1", "--frames", "2", "--classes", "4", "--steps", "1"], "open_vclip + IWO"),
    "bench_evl_cache.py": (["--videos", "2", "--frames", "2", "--epochs", "1", "--layers", "1"], "speed-up"),
    "bench_eval.py": (["--videos", "2", "--classes", "4", "--frames", "2", "--workers", "0"], "speed-up"),
    "bench_predict.py": (["--model", "tiny", "--repeats", "1", "--videos", "2", "--classes", "4", "--frames", "2",
                          "--batch-size", "2"], "bare open_clip"),
    "bench_loader.py": (["--quick", "--videos", "2", "--batch-size", "2", "--size", "32", "--cache", "{tmp}"],
                        "1x1x8"),
    "bench_serve.py": (["--requests", "2", "--clients", "1", "--threads", "1"], "ovar serve (HTTP)"),
    "bench_decode.py": (["--quick", "--repeats", "1", "--no-peers", "--only", "mjpeg", "--cache", "{tmp}"],
                        "mjpeg"),
    "bench_precision.py": ([], "bfloat16"),
}


def test_every_benchmark_script_is_listed():
    scripts = {p.name for p in BENCHMARKS.glob("bench_*.py")}
    assert scripts == set(RUNS)


@pytest.mark.slow
@pytest.mark.parametrize("script", sorted(RUNS))
def test_benchmark_runs_at_its_smallest_size(script, tmp_path):
    if script == "bench_precision.py" and not reference_dir().is_dir():
        pytest.skip(f"needs the reference sets ({reference_dir()} not found)")
    args, expected = RUNS[script]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(BENCHMARKS / script), *[a.format(tmp=tmp_path) for a in args]],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert expected in proc.stdout, proc.stdout[-2000:]
