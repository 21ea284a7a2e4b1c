"""The HTTP face of :class:`~ovar.serve.service.ClassifyService` (FastAPI).

Routes: ``POST /v1/classify``, ``GET /v1/health``, ``GET /v1/models``, the OpenAPI page
(``/docs``, ``/openapi.json``) and a one-page web client at ``/``.  Errors are JSON
``{"error": "one line"}`` with the same line the command line prints after ``ovar: error:``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
from contextlib import asynccontextmanager
from importlib.resources import files
from pathlib import Path
from typing import Any, AsyncIterator

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.datastructures import UploadFile
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Receive, Scope, Send

from .. import __version__
from ..errors import OvarError
from .service import ClassifyService, RequestError

log = logging.getLogger(__name__)

_CHUNK = 1 << 20
_CLASSIFY_FORM = {
    "requestBody": {"content": {"multipart/form-data": {"schema": {
        "type": "object",
        "properties": {
            "video": {"type": "string", "format": "binary", "description": "the video file (or send path)"},
            "path": {"type": "string", "description": "a video, frame folder or folder of videos under --root"},
            "labels": {"type": "string", "description": 'comma-separated action names, e.g. "surfing, skiing"'},
            "label_set": {"type": "string", "description": "the name of a label set loaded at start-up"},
            "views": {"type": "string", "default": "1x1", "description": "temporal clips x spatial crops"},
            "segments": {"type": "number", "description": "also classify windows of this many seconds"},
            "top_k": {"type": "integer", "description": "labels to return per video (default all)"},
        }}}}},
    "responses": {"200": {"description": "the same JSON as `ovar predict --format json`"},
                  "400": {"description": "bad labels or options"}, "403": {"description": "path outside --root"},
                  "404": {"description": "no such path under --root"}, "413": {"description": "upload too large"},
                  "422": {"description": "the video cannot be decoded"},
                  "503": {"description": "queue full: retry after Retry-After seconds"}},
}


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


class _TooLarge(Exception):
    pass


class UploadLimit:
    """Refuses request bodies over ``max_bytes`` with 413: at once from Content-Length, or
    as soon as a streamed (chunked) body passes the limit."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT"):
            await self.app(scope, receive, send)
            return
        message = f"upload larger than the {self.max_bytes / 2**20:g} MiB limit"
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await _error(413, message, {"Connection": "close"})(scope, receive, send)
            return
        received, started = 0, False

        async def limited_receive() -> dict:
            nonlocal received
            event = await receive()
            if event["type"] == "http.request":
                received += len(event.get("body", b""))
                if received > self.max_bytes:
                    raise _TooLarge
            return event

        async def watched_send(event: dict) -> None:
            nonlocal started
            started = started or event["type"] == "http.response.start"
            await send(event)

        try:
            await self.app(scope, limited_receive, watched_send)
        except _TooLarge:
            if not started:
                await _error(413, message, {"Connection": "close"})(scope, receive, send)


def create_app(service: ClassifyService, *, root: str | os.PathLike | None = None,
               max_upload_bytes: int = 100 * 2**20, retry_after_s: int = 1) -> FastAPI:
    """The FastAPI application serving ``service``; ``root`` is the folder that ``path``
    requests may read from (None: only uploads)."""
    root_dir = Path(root).resolve() if root is not None else None
    upload_dir = Path(tempfile.mkdtemp(prefix="ovar-serve-"))

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            service.close()
            shutil.rmtree(upload_dir, ignore_errors=True)

    app = FastAPI(title="ovar", version=__version__, lifespan=lifespan,
                  description="Zero-shot video action classification against any list of action names.")
    app.add_middleware(UploadLimit, max_bytes=max_upload_bytes)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> HTMLResponse:
        return HTMLResponse(files(__package__).joinpath("page.html").read_text(encoding="utf-8"))

    @app.get("/v1/health")
    def health() -> dict[str, Any]:
        return service.health()

    @app.get("/v1/models")
    def models() -> dict[str, Any]:
        return {"models": [service.describe()]}

    @app.post("/v1/classify", openapi_extra=_CLASSIFY_FORM)
    async def classify(request: Request) -> Response:
        # Admission comes before the body is read: a full queue answers at once.
        if not service.admit():
            return _error(503, f"busy: {service.options.queue_size} requests in progress, retry later",
                          {"Retry-After": str(retry_after_s)})
        upload: Path | None = None
        try:
            form = await request.form(max_files=1, max_fields=16)
            fields = {k: v for k, v in form.items() if isinstance(v, str)}
            video = form.get("video")
            names = service.labels_of(fields.get("labels"), fields.get("label_set"))
            options = _options(fields)
            if isinstance(video, UploadFile):
                if "path" in fields:
                    raise RequestError(400, "send a video or a path, not both")
                display = _display_name(video.filename)
                upload = await _save(video, upload_dir)
                results = await service.classify(str(upload), display, names, **options)
            elif fields.get("path"):
                path, display = _inside_root(fields["path"], root_dir)
                results = await service.classify(path, display, names, allowed_root=root_dir, **options)
            else:
                raise RequestError(400, "no video given (send a file as 'video' or a path under --root as 'path')")
            return Response(json.dumps(results, ensure_ascii=False), media_type="application/json")
        except RequestError as exc:
            return _error(exc.status, str(exc))
        except OvarError as exc:  # labels, templates: the user's input
            return _error(400, str(exc))
        except ClientDisconnect:  # the client left mid-upload; nobody reads this answer
            return _error(400, "client disconnected")
        finally:
            service.release()
            if upload is not None:
                upload.unlink(missing_ok=True)

    return app


def _options(fields: dict[str, str]) -> dict[str, Any]:
    options: dict[str, Any] = {"views": fields.get("views") or "1x1"}
    for key, kind in (("segments", float), ("top_k", int)):
        text = fields.get(key)
        if text:
            try:
                options[key] = kind(text)
            except ValueError:
                raise RequestError(400, f"{key}: expected a {kind.__name__}, got {text!r}") from None
    if options.get("top_k") is not None and options["top_k"] < 1:
        raise RequestError(400, f"top_k: must be at least 1, got {options['top_k']}")
    return options


def _display_name(filename: str | None) -> str:
    """The client's file name, for messages only (never used as a path): its last part."""
    name = re.split(r"[\\/]", filename or "")[-1].strip()
    return name or "upload"


async def _save(video: UploadFile, folder: Path) -> Path:
    """Copy an upload to a file of our own naming; only a short alphanumeric suffix of the
    client's name is kept (decoders look at it)."""
    suffix = Path(_display_name(video.filename)).suffix
    suffix = suffix if re.fullmatch(r"\.[A-Za-z0-9]{1,8}", suffix) else ""
    handle, name = tempfile.mkstemp(suffix=suffix, dir=folder)
    with os.fdopen(handle, "wb") as out:
        while chunk := await video.read(_CHUNK):
            out.write(chunk)
    return Path(name)


def _inside_root(requested: str, root: Path | None) -> tuple[str, str]:
    """``(path to read, name to show)`` for a ``path`` request; 403 outside ``root``."""
    if root is None:
        raise RequestError(403, "path: this server reads no paths (it was started without --root)")
    if "\x00" in requested:
        raise RequestError(400, "path: invalid characters")
    display = os.path.normpath(requested)
    candidate = root / display
    # resolve() follows symlinks, so a link inside the root pointing out of it is refused too.
    if not candidate.resolve().is_relative_to(root):
        raise RequestError(403, f"{requested}: outside the served root")
    return str(candidate), display
