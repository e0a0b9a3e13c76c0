"""``vcritic serve``: the HTTP edges (FastAPI on uvicorn) around the model code every command uses.

A request's images are decoded and encoded (:meth:`vcritic.inference.critic.Encoder.encode_questions`,
``encode_both_orders``)
in a small thread pool, then batched with other requests' (:mod:`vcritic.serve.batcher`) and read on the model thread
with ``Critic.read_shared`` / ``Critic.read_single``: the same code path as ``vcritic score`` and ``compare``. So a
score here
equals the CLI's for the same file; with ``--reproducible`` (fixed shapes) bitwise, whatever else was batched.

Limits answer with a JSON ``{"error": ...}``: 401 without the API key, 413 for a body, an image count or a pair count
over the limit, 429 when the queue is full, 503 while the model loads, 504 after the request's timeout. An image
that cannot be used (corrupt, not an image, over the pixel limit) gets an ``error`` in its own row; the others in
the request are still scored.
"""

from __future__ import annotations

import asyncio
import copy
import hmac
import math
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from fastapi import Request  # resolved by name from the endpoints' annotations (postponed by the import above)

from vcritic.errors import VcriticError
from vcritic.serve.batcher import Batcher, ItemError, ModelThread

if TYPE_CHECKING:
    from vcritic.evaluation.calibration import Calibration

MIB = 1 << 20
# Pillow's own decompression-bomb threshold (it raises at twice this): about 89 megapixels.
DEFAULT_MAX_IMAGE_PIXELS = 89_478_485
SCORE_ENDPOINTS = ("/v1/score", "/v1/compare", "/v1/model", "/health", "/metrics")


@dataclass(frozen=True)
class Limits:
    """What one service accepts; ``vcritic serve`` options of the same names."""

    max_batch: int = 32  # items per model batch, across requests
    max_wait_ms: float = 10.0  # how long a batch waits for more after its first item
    max_body_bytes: int = 64 * MIB
    max_images: int = 256  # images (or pairs) per request
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
    max_queue: int = 1024  # images and pairs admitted and not yet answered
    timeout: float = 60.0  # seconds per request; a request may ask for less (?timeout=)
    threads: int = 4  # decode/encode threads


class ServiceError(Exception):
    """An answer other than 200, with a JSON body ``{"error": message, "hint": hint}``."""

    def __init__(self, status: int, message: str, hint: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.hint, self.headers = status, message, hint, headers


class _BodyTooLarge(Exception):
    pass


class Metrics:
    """Prometheus metrics of one service, in a registry of its own."""

    def __init__(self, queue_depth: Callable[[], float], ready: Callable[[], float]):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("vcritic_requests", "HTTP requests answered", ["endpoint", "status"], registry=r)
        self.images = Counter("vcritic_images", "Images (score) or pairs (compare) answered", ["endpoint", "outcome"],
                              registry=r)  # fmt: skip
        self.latency = Histogram(
            "vcritic_request_seconds", "Time from a request's arrival to its answer", ["endpoint"], registry=r,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
        )  # fmt: skip
        sizes = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
        self.batch_size = Histogram("vcritic_batch_size", "Items per model batch", registry=r, buckets=sizes)
        seconds = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
        self.batch_seconds = Histogram("vcritic_batch_seconds", "Model time per batch", registry=r, buckets=seconds)
        self.halvings = Counter(
            "vcritic_oom_halvings", "Batch size halvings after running out of GPU memory", registry=r
        )
        Gauge("vcritic_queue_depth", "Images and pairs admitted and not yet answered", registry=r).set_function(
            queue_depth
        )
        Gauge("vcritic_ready", "1 once the model is loaded", registry=r).set_function(ready)

    def on_batch(self, size: int, seconds: float) -> None:
        self.batch_size.observe(size)
        self.batch_seconds.observe(seconds)


class Service:
    """The model, its batcher and the request-side work; :func:`create_app` puts HTTP around it.

    ``load()`` returns a :class:`vcritic.inference.critic.Critic` (with ``.loaded``, as the CLI's loader sets); it runs
    on the
    model thread once the server is up, so ``/health`` answers 503 while it runs. ``on_load_error(err)`` is called if
    it raises (the CLI then stops the server and reports the error). With a ``calibration``, score rows that read
    MOS carry ``mos_calibrated`` and ``calibrated_scale``, as ``vcritic score --calibration`` writes them.
    """

    def __init__(self, load: Callable[[], Any], limits: Limits = Limits(), *, api_key: str | None = None,
                 on_load_error: Callable[[BaseException], None] | None = None,
                 calibration: Calibration | None = None):  # fmt: skip
        self.load = load
        self.limits = limits
        self.api_key = api_key
        self.calibration = calibration
        self.on_load_error = on_load_error
        self.critic = None
        self.load_error: BaseException | None = None
        self.pending = 0  # images and pairs admitted, not yet answered
        self.metrics = Metrics(lambda: self.pending, lambda: 1.0 if self.critic is not None else 0.0)
        self._local = threading.local()
        self._pool: ThreadPoolExecutor | None = None
        self.model_thread: ModelThread | None = None
        self.batcher: Batcher | None = None
        self._tasks: list[asyncio.Task] = []

    # -- life cycle ----------------------------------------------------------------------------------------------
    async def start(self) -> None:
        self._pool = ThreadPoolExecutor(self.limits.threads, thread_name_prefix="vcritic-encode")
        self.model_thread = ModelThread()
        self.batcher = Batcher(
            self._run_batch,
            self.model_thread,
            max_batch=self.limits.max_batch,
            max_wait=self.limits.max_wait_ms / 1000,
            device=lambda: self.critic.device,
            on_batch=self.metrics.on_batch,
            on_halving=lambda size: self.metrics.halvings.inc(),
        )
        self._tasks = [asyncio.create_task(self.batcher.run()), asyncio.create_task(self._load())]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.model_thread is not None:
            self.model_thread.stop()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

    async def _load(self) -> None:
        try:
            self.critic = await self.model_thread.call(self.load)
        except asyncio.CancelledError:
            raise
        except BaseException as err:
            self.load_error = err
            if self.on_load_error is not None:
                self.on_load_error(err)

    # -- checks --------------------------------------------------------------------------------------------------
    def check_key(self, given: str | None) -> None:
        if self.api_key is None:
            return
        if not given or not hmac.compare_digest(given.encode(), self.api_key.encode()):
            raise ServiceError(
                401,
                "missing or wrong API key",
                hint="send it as 'Authorization: Bearer KEY' or 'X-API-Key: KEY'",
                headers={"WWW-Authenticate": "Bearer"},
            )

    def require_ready(self) -> None:
        if self.critic is None:
            message = "the model failed to load" if self.load_error else "the model is still loading"
            raise ServiceError(503, message, hint="wait until GET /health answers 200", headers={"Retry-After": "1"})

    def admit(self, count: int, what: str) -> None:
        """Take ``count`` places in the queue, or answer 413/429."""
        limits = self.limits
        if count == 0:
            raise ServiceError(400, f"no {what} in the request", hint="see /docs for the request formats")
        if count > limits.max_images:
            raise ServiceError(
                413,
                f"{count} {what} in one request, over this service's limit of {limits.max_images}",
                hint="split the request, or start the service with a larger --max-images",
            )
        if self.pending + count > limits.max_queue:
            raise ServiceError(
                429,
                f"the queue is full ({self.pending} of {limits.max_queue} places taken, {count} asked)",
                hint="retry shortly, or start the service with a larger --max-queue",
                headers={"Retry-After": "1"},
            )
        self.pending += count

    def timeout_for(self, asked: float | None) -> float:
        if asked is None:
            return self.limits.timeout
        if not asked > 0:
            raise ServiceError(400, f"timeout={asked} is not a positive number of seconds")
        return min(asked, self.limits.timeout)

    # -- work ----------------------------------------------------------------------------------------------------
    def _encoder(self):
        """This decode thread's own copy of the encoder: a fast tokenizer must not be used by two threads at once."""
        encoder = getattr(self._local, "encoder", None)
        if encoder is None:
            encoder = self._local.encoder = copy.deepcopy(self.critic.encoder)
        return encoder

    def _image(self, data: bytes):
        from vcritic.base.images import load_image_bytes

        return load_image_bytes(data, self.limits.max_image_pixels)

    def _encode_score(self, questions, data: bytes):
        from vcritic.base.images import describe_image_error

        try:
            return self._encoder().encode_questions(questions, self._image(data)), None
        except Exception as err:  # its row says why; the request's other images go on
            return None, describe_image_error(err)

    def _encode_pair(self, first: bytes, second: bytes):
        from vcritic.base.images import describe_image_error

        try:
            a = self._image(first)
        except Exception as err:
            return None, f"image a: {describe_image_error(err)}"
        try:
            b = self._image(second)
        except Exception as err:
            return None, f"image b: {describe_image_error(err)}"
        try:
            return self._encoder().encode_both_orders(a, b), None
        except Exception as err:
            return None, describe_image_error(err)

    def _run_batch(self, key, payloads: Sequence[Any]) -> list[Any]:
        """On the model thread: one batch of encoded items, read as ``score_paths`` / ``compare_paths`` read."""
        critic = self.critic
        if key[0] == "score":
            from vcritic.readout.results import scores_from_readouts

            questions = key[1]
            return scores_from_readouts(
                questions, critic.read_shared(questions, critic.encoder.collate_questions(payloads))
            )
        from vcritic.inference.critic import symmetric_preference

        flat = [encoding for pair in payloads for encoding in pair]
        return symmetric_preference(
            critic.read_single(critic.pair_question, critic.encoder.collate(flat)).probs
        ).tolist()

    async def _answer(self, key, encode: Callable, inputs: Sequence[tuple]) -> list[tuple[Any, str | None]]:
        """(result, error) per input: encoded in the thread pool, then batched; cancelling it (a timeout) drops the
        items not yet run."""
        loop = asyncio.get_running_loop()
        encoded = await asyncio.gather(*(loop.run_in_executor(self._pool, encode, *args) for args in inputs))
        good = [i for i, (_, error) in enumerate(encoded) if error is None]
        futures = self.batcher.submit(key, [encoded[i][0] for i in good])
        found = await asyncio.gather(*futures, return_exceptions=True)
        answers: list[tuple[Any, str | None]] = [(None, error) for _, error in encoded]
        for i, result in zip(good, found, strict=True):
            if isinstance(result, ItemError):
                answers[i] = (None, str(result))
            elif isinstance(result, BaseException):
                raise result
            else:
                answers[i] = (result, None)
        return answers

    async def score(self, images: Sequence[tuple[str | None, bytes]], tasks: Sequence[str]) -> list[dict]:
        # The judge's own questions (its card's prompt and read-out for MOS), as `vcritic score` asks them.
        questions = self.critic.task_questions(tasks)
        untrained = self.critic.untrained(tasks)
        answers = await self._answer(("score", questions), self._encode_score, [(questions, d) for _, d in images])
        rows = [
            score_row(name, result, error, tasks, untrained, self.calibration)
            for (name, _), (result, error) in zip(images, answers, strict=True)
        ]
        self._count("/v1/score", rows)
        return rows

    async def compare(self, pairs: Sequence[tuple[str | None, bytes, str | None, bytes]]) -> list[dict]:
        from vcritic.readout.schema import verdict

        answers = await self._answer(("compare",), self._encode_pair, [(a, b) for _, a, _, b in pairs])
        rows = []
        for (name_a, _, name_b, _), (p, error) in zip(pairs, answers, strict=True):
            p = _finite(p)
            rows.append({"a": name_a, "b": name_b, "p_a_better": p,
                         "better": verdict(p) if p is not None else None, "error": error})  # fmt: skip
        self._count("/v1/compare", rows)
        return rows

    def _count(self, endpoint: str, rows: list[dict]) -> None:
        failed = sum(1 for row in rows if row["error"])
        self.metrics.images.labels(endpoint, "ok").inc(len(rows) - failed)
        self.metrics.images.labels(endpoint, "error").inc(failed)

    def describe_model(self) -> dict:
        from vcritic.model.presets import get_preset
        from vcritic.readout.tasks import TASKS

        critic = self.critic
        loaded = getattr(critic, "loaded", None)
        name = loaded.name if loaded else critic.source
        preset = get_preset(name)
        return {
            "model": name,
            "preset": preset.name if preset else None,
            "revision": loaded.revision if loaded else None,
            "readout": critic.judge.spec.name,  # how MOS is asked and read (the preset's, --readout's, vcritic.json's)
            "resolution": str(critic.resolution),
            "family": critic.family.model_type,
            "device": str(critic.device),
            "dtype": str(critic.dtype).removeprefix("torch."),
            "reproducible": critic.fixed_shapes.describe() if critic.fixed_shapes else None,
            "tasks": [*TASKS, "all"],
            "scale": "0-100",
            "calibrated_scale": self.calibration.label if self.calibration is not None else None,
            "limits": {**asdict(self.limits), "max_batch": self.batcher.plan.current},
        }


def score_row(name: str | None, score, error: str | None, tasks: Sequence[str], untrained: Sequence[str] = (),
              calibration: Calibration | None = None) -> dict:  # fmt: skip
    """A ``vcritic score`` CSV row as JSON: the same fields (:func:`vcritic.readout.schema.score_columns`, ``untrained``
    too
    when the judge was not trained for some of ``tasks``, the calibrated ones with a ``calibration``), numbers as
    numbers, null where the CSV has an empty cell."""
    from vcritic.pipeline.scoring import NO_RATING
    from vcritic.readout.schema import MOS_SCALE, score_columns

    values: dict[str, Any] = {"path": name, "scale": MOS_SCALE, "error": error, "untrained": ",".join(untrained)}
    if calibration is not None:
        values["calibrated_scale"] = calibration.label
    if score is not None:
        values.update(mos=score.mos, mos_std=score.mos_std, p_ai_generated=score.p_ai_generated)
        if calibration is not None:
            values["mos_calibrated"] = calibration.apply(score.mos)
        values.update(score.attributes)
        values.update({f"{name}_std": value for name, value in score.attributes_std.items()})
        if "mos" in tasks and score.mos is None and error is None:  # a reasoning judge that wrote no number
            values["error"] = NO_RATING
    columns = score_columns(tasks, calibrated=calibration is not None, untrained=bool(untrained))
    return {column: _finite(values.get(column)) for column in columns}


def _finite(value):
    """JSON has no NaN or infinity: such a number is null, as it is an empty cell in the CSV."""
    return None if isinstance(value, float) and not math.isfinite(value) else value


# -- HTTP ------------------------------------------------------------------------------------------------------------
_IMAGE_BODY = {"schema": {"type": "string", "format": "binary"}}


def _request_body(fields: dict[str, str]) -> dict:
    properties = {
        name: {"type": "array", "items": {"type": "string", "format": "binary"}, "description": text}
        for name, text in fields.items()
    }
    properties["tasks"] = {"type": "string", "description": "as the tasks query parameter"}
    return {"requestBody": {"required": True, "content": {
        "multipart/form-data": {"schema": {"type": "object", "properties": properties}},
        **({"image/*": _IMAGE_BODY} if "images" in fields else {}),
    }}}  # fmt: skip


def create_app(service: Service):
    """The FastAPI app for ``service``: routes, the API key, body limit, metrics and JSON errors."""
    from fastapi import Depends, FastAPI, Query
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, Response
    from starlette.exceptions import HTTPException

    from vcritic import __version__

    @asynccontextmanager
    async def lifespan(app):
        await service.start()
        try:
            yield
        finally:
            await service.stop()

    app = FastAPI(
        title="vcritic",
        version=__version__,
        description="Image quality from a multimodal critic: MOS (0-100, higher is better), attributes, "
        "P(AI-generated) and pairwise preference, with dynamic batching across requests.",
        lifespan=lifespan,
    )
    app.state.service = service

    def error(status: int, message: str, hint: str | None = None, headers=None) -> JSONResponse:
        body = {"error": message, **({"hint": hint} if hint else {})}
        return JSONResponse(body, status_code=status, headers=headers)

    @app.exception_handler(ServiceError)
    async def _service_error(request, err: ServiceError):
        return error(err.status, err.message, err.hint, err.headers)

    @app.exception_handler(_BodyTooLarge)
    async def _too_large(request, err):
        return _body_too_large(service.limits.max_body_bytes)

    @app.exception_handler(HTTPException)
    async def _http_error(request, err: HTTPException):
        return error(err.status_code, str(err.detail), headers=getattr(err, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request, err: RequestValidationError):
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())
        return error(422, problems)

    async def api_key(request: Request) -> None:
        given = request.headers.get("x-api-key")
        authorization = request.headers.get("authorization", "")
        if given is None and authorization.lower().startswith("bearer "):
            given = authorization[7:].strip()
        service.check_key(given)

    @app.get("/health", summary="Ready once the model is loaded (200); 503 while it loads")
    async def health():
        if service.critic is not None:
            return {"status": "ready"}
        if service.load_error is not None:
            return JSONResponse({"status": "failed", "error": str(service.load_error)}, status_code=503)
        return JSONResponse({"status": "loading"}, status_code=503)

    @app.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def metrics():
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/model", summary="The model served: preset, revision, read-out, resolution, limits",
             dependencies=[Depends(api_key)])  # fmt: skip
    async def model():
        service.require_ready()
        return service.describe_model()

    @app.post(
        "/v1/score",
        summary="Score images: MOS (0-100), optionally attributes and P(AI-generated)",
        description="The body is one image (Content-Type image/*), or multipart/form-data with any number of file "
        "fields (each a file; any field name). Returns one row per image, in order, with the fields of a "
        "`vcritic score` CSV row; an image that cannot be used has `error` set and null numbers.",
        dependencies=[Depends(api_key)],
        openapi_extra=_request_body({"images": "image files, in order"}),
    )
    async def score(
        request: Request,
        tasks: str | None = Query(None, description="mos, attributes, authenticity or all, comma-separated"),
        timeout: float | None = Query(None, description="seconds; at most the service's --timeout"),
        name: str | None = Query(None, description="the path field of a raw-body image's row"),
    ):
        from vcritic.readout.tasks import parse_tasks

        service.require_ready()
        limit = service.timeout_for(timeout)
        images, form_tasks = await _read_images(request, service.limits, name)
        try:
            wanted = parse_tasks(tasks or form_tasks or "mos")
        except VcriticError as err:
            raise ServiceError(400, err.message, err.hint) from None
        if not wanted:
            raise ServiceError(400, "tasks=none leaves nothing to score", "use mos, attributes, authenticity or all")
        service.admit(len(images), "images")
        try:
            rows = await _within(service.score(images, wanted), limit)
        finally:
            service.pending -= len(images)
        return {"tasks": list(wanted), "results": rows}

    @app.post(
        "/v1/compare",
        summary="P(a has better quality than b), averaged over both presentation orders",
        description="multipart/form-data with file fields a and b: one pair, or as many a's as b's (the i-th a "
        "with the i-th b). Returns one row per pair: p_a_better (0-1), better (a, b or tie) and error.",
        dependencies=[Depends(api_key)],
        openapi_extra=_request_body({"a": "first image of each pair", "b": "second image of each pair"}),
    )
    async def compare(
        request: Request, timeout: float | None = Query(None, description="seconds; at most the service's --timeout")
    ):
        service.require_ready()
        limit = service.timeout_for(timeout)
        pairs = await _read_pairs(request, service.limits)
        service.admit(len(pairs), "pairs")
        try:
            rows = await _within(service.compare(pairs), limit)
        finally:
            service.pending -= len(pairs)
        return {"results": rows}

    app.add_middleware(_BodyLimit, limit=service.limits.max_body_bytes)
    app.add_middleware(_Count, metrics=service.metrics)
    return app


async def _within(work, seconds: float):
    try:
        return await asyncio.wait_for(work, seconds)
    except asyncio.TimeoutError:
        raise ServiceError(
            504, f"not answered within {seconds:g} s", hint="retry, send fewer images, or raise --timeout"
        ) from None


async def _form(request, max_files: int):
    from starlette.exceptions import HTTPException

    try:
        return await request.form(max_files=max_files + 1, max_fields=64)
    except HTTPException as err:
        if "Too many files" in str(err.detail):
            hint = "split the request, or start the service with a larger --max-images"
            raise ServiceError(413, f"over {max_files} files in one request", hint=hint) from None
        raise ServiceError(400, f"cannot read the multipart body: {err.detail}") from None


async def _files(form, field: str | None = None) -> list[tuple[str | None, bytes]]:
    from starlette.datastructures import UploadFile

    found = []
    for key, value in form.multi_items():
        if isinstance(value, UploadFile) and (field is None or key == field):
            found.append((value.filename or key, await value.read()))
    return found


def _content_type(request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def _read_images(request, limits: Limits, name: str | None) -> tuple[list[tuple[str | None, bytes]], str | None]:
    """The request's images as (name, bytes), and a tasks form field if there is one."""
    kind = _content_type(request)
    if kind.startswith("image/") or kind == "application/octet-stream":
        return [(name, await request.body())], None
    if kind == "multipart/form-data":
        form = await _form(request, limits.max_images)
        try:
            tasks = form.get("tasks")
            return await _files(form), tasks if isinstance(tasks, str) else None
        finally:
            await form.close()
    raise ServiceError(
        415, f"cannot read images from Content-Type {kind or 'none'!r}",
        hint="send one image with Content-Type image/..., or multipart/form-data with file fields",
    )  # fmt: skip


async def _read_pairs(request, limits: Limits) -> list[tuple[str | None, bytes, str | None, bytes]]:
    if _content_type(request) != "multipart/form-data":
        raise ServiceError(415, "compare takes multipart/form-data with file fields a and b")
    form = await _form(request, 2 * limits.max_images)
    try:
        firsts, seconds = await _files(form, "a"), await _files(form, "b")
    finally:
        await form.close()
    if len(firsts) != len(seconds):
        raise ServiceError(400, f"{len(firsts)} a file(s) but {len(seconds)} b file(s)",
                           hint="send one b for every a, in the same order")  # fmt: skip
    return [(na, a, nb, b) for (na, a), (nb, b) in zip(firsts, seconds, strict=True)]


def _body_too_large(limit: int):
    from fastapi.responses import JSONResponse

    return JSONResponse(
        {"error": f"request body over this service's limit of {limit} bytes",
         "hint": "send fewer or smaller images per request, or start the service with a larger --max-body-mb"},
        status_code=413,
    )  # fmt: skip


class _BodyLimit:
    """ASGI middleware: a body over ``limit`` bytes is refused with 413, from its Content-Length before it is
    read, or while it is read (a chunked upload) before more than ``limit`` bytes are held."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > self.limit:
                return await _body_too_large(self.limit)(scope, receive, send)
        seen = 0

        async def limited():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise _BodyTooLarge
            return message

        await self.app(scope, limited, send)


class _Count:
    """ASGI middleware: requests and their latency in the metrics, by endpoint and status."""

    def __init__(self, app, metrics: Metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        endpoint = path if path in SCORE_ENDPOINTS else "other"
        started = time.perf_counter()
        status = 500

        async def sending(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            self.metrics.requests.labels(endpoint, str(status)).inc()
            self.metrics.latency.labels(endpoint).observe(time.perf_counter() - started)
