"""A small client for ``vcritic serve``: :class:`Client` (synchronous) and :class:`AsyncClient`, on httpx.

Images may be file paths, PIL images (sent as PNG: lossless, so the service scores the pixels you have) or encoded
bytes. ``score`` and ``compare`` return the service's rows as dicts, in order: one dict for one image or pair, a list
for a list. A row for an image the service could not use has ``error`` set; anything else that is not a 200 answer
raises :class:`ServiceError`. A 429 (queue full) or 503 (still loading) is retried after the service's Retry-After,
``retries`` times.

    from vcritic.serve.client import Client

    with Client("http://127.0.0.1:8000") as critic:
        rewards = [row["mos"] for row in critic.score(images)]
"""

from __future__ import annotations

import asyncio
import io
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vcritic.errors import VcriticError

DEFAULT_URL = "http://127.0.0.1:8000"


class ServiceError(VcriticError):
    """The service answered with an error (``status``: the HTTP status)."""

    def __init__(self, status: int, message: str, hint: str | None = None):
        super().__init__(f"vcritic serve answered {status}: {message}", hint)
        self.status = status


def _as_upload(item: Any, index: int) -> tuple[str, bytes, str]:
    """(file name, bytes, content type) for a path, PIL image or bytes."""
    if isinstance(item, bytes | bytearray | memoryview):
        return f"image-{index}", bytes(item), "application/octet-stream"
    if isinstance(item, str | os.PathLike):
        path = Path(item)
        return path.name, path.read_bytes(), "application/octet-stream"
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow is a vcritic dependency
        Image = None
    if Image is not None and isinstance(item, Image.Image):
        buffer = io.BytesIO()
        item.save(buffer, format="PNG", compress_level=1)  # lossless; level 1: fast to write, still compact
        return f"image-{index}.png", buffer.getvalue(), "image/png"
    raise VcriticError(
        f"cannot send a {type(item).__name__} as an image", hint="pass a file path, a PIL image or encoded bytes"
    )


def _as_list(items) -> tuple[list, bool]:
    if isinstance(items, list | tuple):
        if not items:
            raise VcriticError("no images given", hint="pass a file path, a PIL image, bytes or a list of them")
        return list(items), False
    return [items], True


def _pairs(a, b) -> tuple[list[tuple[Any, Any]], bool]:
    if b is None:
        if not isinstance(a, list | tuple) or not a or not all(isinstance(p, list | tuple) and len(p) == 2 for p in a):
            raise VcriticError("compare needs two images", hint="compare(a, b), or compare([(a, b), ...])")
        return [tuple(p) for p in a], False
    firsts, single = _as_list(a)
    seconds, single_b = _as_list(b)
    if single != single_b or len(firsts) != len(seconds):
        raise VcriticError("compare(a, b) needs two images, or two lists of the same length")
    return list(zip(firsts, seconds, strict=True)), single


def _score_request(images: list, tasks: str | Sequence[str], timeout: float | None) -> dict:
    params = {"tasks": tasks if isinstance(tasks, str) else ",".join(tasks)}
    if timeout is not None:
        params["timeout"] = str(timeout)
    files = [("images", _as_upload(image, i)) for i, image in enumerate(images)]
    return {"url": "/v1/score", "params": params, "files": files}


def _compare_request(pairs: list[tuple[Any, Any]], timeout: float | None) -> dict:
    files = []
    for i, (a, b) in enumerate(pairs):
        files += [("a", _as_upload(a, 2 * i)), ("b", _as_upload(b, 2 * i + 1))]
    return {"url": "/v1/compare", "params": {"timeout": str(timeout)} if timeout else {}, "files": files}


def _results(response, single: bool):
    if response.status_code != 200:
        try:
            body = response.json()
            message, hint = body.get("error", response.text), body.get("hint")
        except ValueError:
            message, hint = response.text.strip() or response.reason_phrase, None
        raise ServiceError(response.status_code, message, hint)
    rows = response.json()["results"]
    return rows[0] if single else rows


def _retry_after(response, attempt: int) -> float | None:
    """Seconds to wait before retrying a 429/503, or None for an answer to keep."""
    if response.status_code not in (429, 503):
        return None
    try:
        return min(30.0, float(response.headers.get("retry-after", "")))
    except ValueError:
        return min(30.0, 0.5 * 2**attempt)


def _headers(api_key: str | None) -> dict[str, str]:
    key = api_key if api_key is not None else os.environ.get("VCRITIC_API_KEY")
    return {"Authorization": f"Bearer {key}"} if key else {}


class Client:
    """Synchronous client. ``api_key`` defaults to the VCRITIC_API_KEY environment variable; ``timeout``: seconds
    for each HTTP call (the service has its own, ``--timeout``)."""

    def __init__(self, url: str = DEFAULT_URL, *, api_key: str | None = None, timeout: float = 120.0,
                 retries: int = 3):  # fmt: skip
        import httpx

        self.retries = retries
        self._http = httpx.Client(base_url=url, headers=_headers(api_key), timeout=timeout)

    def score(self, images, *, tasks: str | Sequence[str] = "mos", timeout: float | None = None):
        """Rows with the fields of a ``vcritic score`` CSV row (mos 0-100 ...), one per image."""
        pictures, single = _as_list(images)
        return _results(self._send(_score_request(pictures, tasks, timeout)), single)

    def compare(self, a, b=None, *, timeout: float | None = None):
        """Rows with ``p_a_better`` (0-1, order-symmetric), ``better`` and ``error``: ``compare(a, b)`` gives one,
        lists of equal length or a list of pairs give a list."""
        pairs, single = _pairs(a, b)
        return _results(self._send(_compare_request(pairs, timeout)), single)

    def health(self) -> bool:
        """True once the model is loaded."""
        return self._http.get("/health").status_code == 200

    def wait_ready(self, timeout: float = 600.0) -> None:
        """Block until the service is ready (its model loaded), or raise :class:`ServiceError` after ``timeout``."""
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self.health():
                    return
            except httpx.TransportError:  # not listening yet
                pass
            time.sleep(0.2)
        raise ServiceError(503, f"not ready after {timeout:g} s")

    def model(self) -> dict:
        return _results_json(self._http.get("/v1/model"))

    def _send(self, request: dict):
        for attempt in range(self.retries + 1):
            response = self._http.post(**request)
            wait = _retry_after(response, attempt)
            if wait is None or attempt == self.retries:
                return response
            time.sleep(wait)
        return response

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class AsyncClient:
    """:class:`Client` for asyncio: the same calls, awaited. Many concurrent calls share one connection pool, and
    the service batches them together."""

    def __init__(self, url: str = DEFAULT_URL, *, api_key: str | None = None, timeout: float = 120.0,
                 retries: int = 3, max_connections: int = 64):  # fmt: skip
        import httpx

        self.retries = retries
        limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
        self._http = httpx.AsyncClient(base_url=url, headers=_headers(api_key), timeout=timeout, limits=limits)

    async def score(self, images, *, tasks: str | Sequence[str] = "mos", timeout: float | None = None):
        pictures, single = _as_list(images)
        return _results(await self._send(_score_request(pictures, tasks, timeout)), single)

    async def compare(self, a, b=None, *, timeout: float | None = None):
        pairs, single = _pairs(a, b)
        return _results(await self._send(_compare_request(pairs, timeout)), single)

    async def health(self) -> bool:
        return (await self._http.get("/health")).status_code == 200

    async def model(self) -> dict:
        return _results_json(await self._http.get("/v1/model"))

    async def _send(self, request: dict):
        for attempt in range(self.retries + 1):
            response = await self._http.post(**request)
            wait = _retry_after(response, attempt)
            if wait is None or attempt == self.retries:
                return response
            await asyncio.sleep(wait)
        return response

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()


def _results_json(response) -> dict:
    if response.status_code != 200:
        _results(response, True)  # raises with the service's message
    return response.json()
