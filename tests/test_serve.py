"""`ovar serve` for real: the server runs as a subprocess on a free loopback port and is
asked over HTTP (and from its web page in a headless Chromium).  Its answers are checked
against `ovar.predict` / `ovar predict --format json` run here, on the same clips."""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="ovar serve needs the serve extra (fastapi)")
pytest.importorskip("python_multipart", reason="ovar serve needs the serve extra (python-multipart)")
httpx = pytest.importorskip("httpx", reason="the server tests talk HTTP with httpx")

import ovar  # noqa: E402
from ovar.cli import main  # noqa: E402
from serve_process import running_server  # noqa: E402
from videogen import make_video, shared_videos_dir  # noqa: E402

pytestmark = pytest.mark.slow  # a real server process per module, and a real browser

LABELS = ["surfing water", "skiing", "playing guitar", "dancing ballet", "juggling balls"]
SPORTS = ["archery", "rowing", "surfing water"]
QUEUE = 4
TIMEOUT = 120.0  # seconds, for any one request


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """The served folder: generated clips, copies of the shared real videos, a broken
    file, a folder of videos and a symlink pointing out of the folder."""
    base = tmp_path_factory.mktemp("serve")
    root = base / "root"
    (root / "folder").mkdir(parents=True)
    (root / "mixed").mkdir()
    make_video(root / "short.mp4", num_frames=12, fps=12, size=(80, 64))
    make_video(root / "long.mp4", num_frames=45, fps=10, size=(64, 80))  # 4.5 s: a timeline
    make_video(root / "folder" / "a.mp4", num_frames=10, fps=10, size=(72, 72))
    make_video(root / "folder" / "b.mp4", num_frames=16, fps=8, size=(72, 64))
    for name in ("part_0.mp4", "test.avi", "test.mp4"):
        if (shared_videos_dir() / name).is_file():
            shutil.copy(shared_videos_dir() / name, root / name)
    (root / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not a video" * 40)
    shutil.copy(root / "broken.mp4", root / "mixed" / "a_broken.mp4")
    shutil.copy(root / "short.mp4", root / "mixed" / "b_good.mp4")
    (base / "secret.mp4").write_bytes((root / "short.mp4").read_bytes())
    os.symlink(base / "secret.mp4", root / "escape.mp4")
    (base / "sports.txt").write_text("\n".join(SPORTS) + "\n")
    return root


@pytest.fixture(scope="module")
def server(root, tmp_path_factory):
    """Base URL of a running `ovar serve` (tiny random-weight model); always stopped after."""
    args = ["--model", "tiny", "--pretrained", "none", "--root", str(root),
            "--label-set", f"sports={root.parent / 'sports.txt'}", "--max-batch", "8", "--batch-wait-ms", "300",
            "--max-concurrency", "2", "--queue-size", str(QUEUE), "--max-upload-mb", "1"]
    with running_server(args, tmp_path_factory.mktemp("serve-log") / "server.log",
                        tmp_path_factory.mktemp("cache")) as base:
        yield base


@pytest.fixture(scope="module")
def model():
    from ovar.hub import load_model

    return load_model("tiny", "none")


def _post(base: str, *, video: Path | None = None, filename: str | None = None, **fields) -> httpx.Response:
    data = {k: str(v) for k, v in fields.items() if v is not None}
    if video is None:
        return httpx.post(f"{base}/v1/classify", data=data, timeout=TIMEOUT)
    with open(video, "rb") as f:
        return httpx.post(f"{base}/v1/classify", data=data, files={"video": (filename or video.name, f)},
                          timeout=TIMEOUT)


def _same(answer: list[dict], expected: list[dict]) -> None:
    assert len(answer) == len(expected)
    for got, want in zip(answer, expected):
        assert [p["label"] for p in got["predictions"]] == [p["label"] for p in want["predictions"]]
        for g, w in zip(got["predictions"], want["predictions"]):
            assert g["score"] == pytest.approx(w["score"], abs=1e-5)
        assert len(got.get("segments") or []) == len(want.get("segments") or [])
        for gs, ws in zip(got.get("segments") or [], want.get("segments") or []):
            assert (gs["start"], gs["end"]) == (ws["start"], ws["end"])
            assert gs["predictions"][0]["label"] == ws["predictions"][0]["label"]


def _cli_json(root: Path, monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """`ovar predict ... --model tiny --pretrained none` run here, in the served folder."""
    monkeypatch.chdir(root)
    capsys.readouterr()
    code = main(["predict", *args, "--model", "tiny", "--pretrained", "none", "--format", "json"])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_health_models_openapi_and_page(server):
    health = httpx.get(f"{server}/v1/health", timeout=TIMEOUT).json()
    assert health["status"] == "ok" and health["queue_size"] == QUEUE and health["max_batch"] == 8
    models = httpx.get(f"{server}/v1/models", timeout=TIMEOUT).json()["models"]
    assert models[0]["backbone"] == "tiny" and models[0]["label_sets"] == {"sports": SPORTS}
    spec = httpx.get(f"{server}/openapi.json", timeout=TIMEOUT).json()
    assert {"/v1/classify", "/v1/health", "/v1/models"} <= set(spec["paths"])
    assert "video" in json.dumps(spec["paths"]["/v1/classify"])
    assert httpx.get(f"{server}/docs", timeout=TIMEOUT).status_code == 200
    page = httpx.get(f"{server}/", timeout=TIMEOUT)
    assert page.status_code == 200 and 'id="ranking"' in page.text


def test_answers_equal_ovar_predict_json(server, root, monkeypatch, capsys):
    video = "part_0.mp4" if (root / "part_0.mp4").exists() else "long.mp4"
    code, out, _ = _cli_json(root, monkeypatch, capsys, video, "--labels", ", ".join(LABELS),
                             "--views", "2x1", "--segments", "1.5")
    assert code == 0
    expected = json.loads(out)
    by_path = _post(server, path=video, labels=", ".join(LABELS), views="2x1", segments=1.5)
    assert by_path.status_code == 200
    _same(by_path.json(), expected)
    assert by_path.json()[0]["video"] == expected[0]["video"] == video
    uploaded = _post(server, video=root / video, labels=", ".join(LABELS), views="2x1", segments=1.5)
    _same(uploaded.json(), expected)
    # A folder under the root: every video in it, named as the CLI names them.
    code, out, _ = _cli_json(root, monkeypatch, capsys, "folder", "--labels", ", ".join(LABELS))
    folder = _post(server, path="folder", labels=", ".join(LABELS))
    assert [r["video"] for r in folder.json()] == [r["video"] for r in json.loads(out)] == \
        [os.path.join("folder", "a.mp4"), os.path.join("folder", "b.mp4")]
    _same(folder.json(), json.loads(out))
    # A folder with an unreadable video: the same rows as predict's, the failure included.
    code, out, _ = _cli_json(root, monkeypatch, capsys, "mixed", "--labels", ", ".join(LABELS))
    mixed = _post(server, path="mixed", labels=", ".join(LABELS))
    assert mixed.status_code == 200
    rows = mixed.json()
    assert [r["video"] for r in rows] == [r["video"] for r in json.loads(out)] == \
        [os.path.join("mixed", "a_broken.mp4"), os.path.join("mixed", "b_good.mp4")]
    assert rows[0]["predictions"] == [] and rows[0]["error"] == json.loads(out)[0]["error"]
    assert "error" not in rows[1]
    _same(rows, json.loads(out))


def test_concurrent_requests_are_batched_and_equal_predict(server, root, model):
    videos = [p for p in ("short.mp4", "long.mp4", "test.avi", "part_0.mp4", "folder/a.mp4") if (root / p).exists()]
    jobs = [(videos[i % len(videos)], "1x1" if i % 3 else "2x1", i % 2 == 0) for i in range(8)]
    expected = {(v, views): ovar.predict(root / v, LABELS, model=model, views=views).to_dict()
                for v, views, _ in jobs}
    before = httpx.get(f"{server}/v1/health", timeout=TIMEOUT).json()["batching"]["batches"]

    def ask(job):
        video, views, upload = job
        if upload:
            return _post(server, video=root / video, labels=", ".join(LABELS), views=views)
        return _post(server, path=video, labels=", ".join(LABELS), views=views)

    started = time.monotonic()
    with ThreadPoolExecutor(QUEUE) as pool:  # never more in flight than the queue admits
        answers = list(pool.map(ask, jobs))
    assert time.monotonic() - started < 8 * TIMEOUT
    for (video, views, _), answer in zip(jobs, answers):
        assert answer.status_code == 200, answer.text
        _same(answer.json(), [expected[(video, views)]])
    health = httpx.get(f"{server}/v1/health", timeout=TIMEOUT).json()
    assert health["active"] == 0
    # Eight requests in fewer forward passes: some shared a batch.
    assert health["batching"]["batches"] - before < len(jobs)
    assert health["batching"]["largest_batch_jobs"] >= 2


def test_named_label_set_and_cached_classifier(server, root, model):
    answer = _post(server, path="short.mp4", label_set="sports")
    expected = ovar.predict(root / "short.mp4", SPORTS, model=model).to_dict()
    _same(answer.json(), [expected])
    hits = httpx.get(f"{server}/v1/health", timeout=TIMEOUT).json()["label_cache"]["hits"]
    _post(server, path="short.mp4", label_set="sports", top_k=2)
    again = httpx.get(f"{server}/v1/health", timeout=TIMEOUT).json()["label_cache"]["hits"]
    assert again == hits + 1


def test_errors_carry_the_cli_message(server, root, monkeypatch, capsys):
    labels = ", ".join(LABELS)
    # Undecodable: 422, by upload and by path, with the line the CLI prints.
    code, _, err = _cli_json(root, monkeypatch, capsys, "broken.mp4", "--labels", labels)
    assert code == 2 and err.startswith("ovar: error: broken.mp4: ")
    for answer in (_post(server, video=root / "broken.mp4", labels=labels), _post(server, path="broken.mp4", labels=labels)):
        assert answer.status_code == 422
        assert f"ovar: error: {answer.json()['error']}" == err.strip()
    # Missing under the root: 404 with the CLI's line.
    code, _, err = _cli_json(root, monkeypatch, capsys, "nothing.mp4", "--labels", labels)
    answer = _post(server, path="nothing.mp4", labels=labels)
    assert code == 2 and answer.status_code == 404 and f"ovar: error: {answer.json()['error']}" == err.strip()
    # Bad labels: 400, the CLI's line too.
    code, _, err = _cli_json(root, monkeypatch, capsys, "short.mp4", "--labels", "surfing, surfing")
    answer = _post(server, path="short.mp4", labels="surfing, surfing")
    assert code == 2 and answer.status_code == 400 and f"ovar: error: {answer.json()['error']}" == err.strip()
    for fields, words in [({"path": "short.mp4"}, "no labels"),
                          ({"path": "short.mp4", "label_set": "nope"}, "unknown label set 'nope'"),
                          ({"path": "short.mp4", "labels": labels, "views": "3y"}, "views must look like"),
                          ({"path": "short.mp4", "labels": labels, "segments": "soon"}, "segments: expected"),
                          ({"path": "short.mp4", "labels": labels, "top_k": "0"}, "top_k"),
                          ({"labels": labels}, "no video given")]:
        answer = _post(server, **fields)
        assert answer.status_code == 400 and words in answer.json()["error"], (fields, answer.text)


def test_paths_outside_the_root_are_refused(server, root, tmp_path):
    labels = ", ".join(LABELS)
    for path in ("../secret.mp4", str(root.parent / "secret.mp4"), "/etc/passwd", "folder/../../secret.mp4",
                 "escape.mp4"):
        answer = _post(server, path=path, labels=labels)
        assert answer.status_code == 403, (path, answer.text)
        assert "outside the served root" in answer.json()["error"]
    # An upload's file name never becomes a path: nothing is written where it points.
    target = tmp_path / "planted.mp4"
    answer = _post(server, video=root / "short.mp4", filename=f"../../../../{target}", labels=labels)
    assert answer.status_code == 200 and answer.json()[0]["video"] == "planted.mp4"
    assert not target.exists()


def test_uploads_over_the_limit_get_413(server, root):
    big = root / "big.bin"
    big.write_bytes(os.urandom(int(1.5 * 2**20)))  # over the 1 MiB limit
    answer = _post(server, video=big, filename="big.mp4", labels="a, b")
    assert answer.status_code == 413 and "1 MiB limit" in answer.json()["error"]

    def chunks():  # no Content-Length: the limit is enforced while streaming
        head = b'--B\r\nContent-Disposition: form-data; name="video"; filename="big.mp4"\r\n\r\n'
        yield head
        for _ in range(6):
            yield b"\x00" * (2**18)
        yield b"\r\n--B--\r\n"

    answer = httpx.post(f"{server}/v1/classify", content=chunks(), timeout=TIMEOUT,
                        headers={"Content-Type": "multipart/form-data; boundary=B"})
    assert answer.status_code == 413


def _hold(port: int) -> socket.socket:
    """A request whose body never finishes: it holds a place in the queue."""
    s = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    s.sendall(b"POST /v1/classify HTTP/1.1\r\nHost: 127.0.0.1\r\n"
              b"Content-Type: multipart/form-data; boundary=B\r\nContent-Length: 50000\r\n\r\n"
              b'--B\r\nContent-Disposition: form-data; name="labels"\r\n\r\na, b\r\n')
    return s


def _wait_active(server: str, count: int) -> None:
    deadline = time.monotonic() + 60
    while httpx.get(f"{server}/v1/health", timeout=TIMEOUT).json()["active"] != count:
        assert time.monotonic() < deadline, f"the server never reached {count} active requests"
        time.sleep(0.1)


def test_a_full_queue_answers_503_with_retry_after(server):
    port = int(server.rsplit(":", 1)[1])
    held = [_hold(port) for _ in range(QUEUE)]
    try:
        _wait_active(server, QUEUE)
        answer = _post(server, path="short.mp4", labels="a, b")
        assert answer.status_code == 503 and answer.headers["Retry-After"] == "1"
        assert "busy" in answer.json()["error"]
    finally:
        for s in held:
            s.close()
    _wait_active(server, 0)
    assert _post(server, path="short.mp4", labels="a, b").status_code == 200


BROWSER_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def test_web_page_in_headless_chromium(server, root, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    browser_path = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(browser_path).exists():
        pytest.skip("no Chromium browser on this machine (apt-get install chromium)")
    expected = _post(server, video=root / "long.mp4", labels=", ".join(LABELS), segments=1).json()[0]
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=browser_path, args=BROWSER_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 1100})
            page.goto(f"{server}/", timeout=TIMEOUT * 1000)
            page.wait_for_selector("#label-set option[value=sports]", state="attached", timeout=TIMEOUT * 1000)
            page.set_input_files("#video", str(root / "long.mp4"))
            page.fill("#labels", ", ".join(LABELS))
            page.fill("#segments", "1")
            page.click("#classify")
            page.wait_for_selector("#ranking tbody tr", timeout=TIMEOUT * 1000)
            rows = page.eval_on_selector_all(
                "#ranking tbody tr", "rows => rows.map(r => [r.cells[0].textContent, r.cells[1].textContent])")
            lines = page.locator("#timeline polyline").count()
            bands = page.locator("#timeline rect").count()
            page.screenshot(path=str(tmp_path / "serve-page.png"), full_page=True)
        finally:
            browser.close()
    assert [label for label, _ in rows] == [p["label"] for p in expected["predictions"]]
    assert [float(score) for _, score in rows] == pytest.approx([p["score"] for p in expected["predictions"]], abs=6e-5)
    assert lines >= 1 and bands >= len(expected["segments"])
    assert (tmp_path / "serve-page.png").stat().st_size > 5000
