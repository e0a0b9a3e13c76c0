"""``vcritic serve``: keep a critic loaded behind HTTP, batching concurrent requests (see vcritic.serve.service)."""

from __future__ import annotations

import ipaddress
import signal
from typing import Annotated

import typer

from vcritic.cli._options import CalibrationOpt, ForceCalibrationModelOpt, ModelOpt, model_options
from vcritic.inference.model_spec import ModelSpec

EPILOG = (
    "Endpoints: POST /v1/score (one image as the body with Content-Type image/..., or multipart file fields; "
    "?tasks= as score --tasks) answers rows with the fields of a score CSV row; POST /v1/compare (multipart fields "
    "a and b) answers P(a better); GET /health (503 until the model is loaded), /v1/model, /metrics (Prometheus), "
    '/docs (OpenAPI). Errors are JSON {"error": ...}: 401 API key, 413 over a limit, 429 queue full, 504 timeout. '
    "SIGTERM stops taking connections, answers the requests in flight and exits 0. Needs: pip install "
    "'vcritic\\[serve]'. See docs/guides/serve.md."  # \\[ : the help is rich markup
)


# Requests are batched by --max-batch and decoded by --threads, not by --batch-size and --workers.
@model_options(without=("batch_size", "workers"))
def serve(
    model: ModelOpt = None,  # first in --help; the command reads it from spec
    host: Annotated[
        str, typer.Option("--host", help="Address to listen on. 0.0.0.0 listens on every interface: set an API key.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", "-p", min=1, max=65535, help="Port to listen on.")] = 8000,
    max_batch: Annotated[
        int, typer.Option("--max-batch", min=1, help="Images (or pairs) per model batch, gathered across requests.")
    ] = 32,
    max_wait_ms: Annotated[
        float,
        typer.Option(
            "--max-wait-ms", min=0, help="How long a batch waits for more requests after its first image, in ms."
        ),
    ] = 10.0,
    api_key: Annotated[
        str | None,
        typer.Option(
            "--api-key",
            envvar="VCRITIC_API_KEY",
            help="Require this key ('Authorization: Bearer KEY' or 'X-API-Key: KEY') on /v1/*; 401 without it. "
            "Prefer the environment variable: a command line is visible to other users.",
            show_default=False,
        ),
    ] = None,
    max_body_mb: Annotated[
        float, typer.Option("--max-body-mb", min=0.001, help="Largest request body, in MiB (413 above).")
    ] = 64.0,
    max_images: Annotated[
        int, typer.Option("--max-images", min=1, help="Most images (or pairs) in one request (413 above).")
    ] = 256,
    max_image_pixels: Annotated[
        int,
        typer.Option(
            "--max-image-pixels",
            min=1,
            help="Largest image, in pixels, checked from its header before decoding (a decompression bomb is "
            "refused): that image's row gets an error, the others are scored. Default: Pillow's bomb threshold.",
        ),
    ] = 89_478_485,
    max_queue: Annotated[
        int,
        typer.Option("--max-queue", min=1, help="Most images and pairs waiting or in work at once (429 above)."),
    ] = 1024,
    timeout: Annotated[
        float,
        typer.Option("--timeout", min=0.001, help="Seconds a request may take (504 after); ?timeout= asks for less."),
    ] = 60.0,
    threads: Annotated[
        int, typer.Option("--threads", min=1, help="Threads that decode and preprocess images while the model runs.")
    ] = 4,
    access_log: Annotated[bool, typer.Option("--access-log", help="Log every request (uvicorn's access log).")] = False,
    calibration_file: CalibrationOpt = None,
    force_calibration_model: ForceCalibrationModelOpt = False,
    spec: ModelSpec = ModelSpec(),
) -> None:
    """Serve the critic over HTTP: load once, then score and compare images for other programs (reward loops,
    pipelines, web back-ends), batching concurrent requests.

    Listens on 127.0.0.1:8000 by default. /health answers 503 while the model loads and 200 once it is ready. A
    score is the one `vcritic score` gives for the same file (with --calibration, mos_calibrated too); with
    --reproducible bitwise, whatever other requests share its batch.
    """
    from vcritic.cli._calibration import check_calibration_model, read_calibration
    from vcritic.errors import UsageError

    try:
        import fastapi  # noqa: F401
        import prometheus_client  # noqa: F401
        import uvicorn
    except ImportError as err:
        from vcritic.errors import VcriticError

        raise VcriticError(f"vcritic serve needs {err.name}, which is not installed",
                           hint="pip install 'vcritic[serve]'") from None  # fmt: skip
    if max_images > max_queue:
        raise UsageError(f"--max-images {max_images} is over --max-queue {max_queue}: such a request could never "
                         "be taken", hint="raise --max-queue or lower --max-images")  # fmt: skip
    from vcritic.cli._output import stderr
    from vcritic.serve.service import MIB, Limits, Service, create_app

    if api_key is not None and not api_key.strip():
        raise UsageError("--api-key is empty", hint="give a key, or leave the option and VCRITIC_API_KEY out")
    # As score reads it, before anything starts: a request whose tasks leave out MOS gets no calibrated fields.
    from vcritic.cli._model import default_for_command

    model_name = spec.model or default_for_command(spec.device, announce=False)
    calibration = read_calibration(calibration_file, ["mos"], model_name, spec, force_calibration_model)
    if api_key is None and not _is_loopback(host):
        stderr.print(f"Warning: listening on {host} without an API key: anyone who reaches it can use the model "
                     "(set VCRITIC_API_KEY)", style="yellow", markup=False)  # fmt: skip

    def load():
        from vcritic.cli._model import load_for_command

        critic = load_for_command(spec)
        if calibration is not None:  # now with the commit loading found
            check_calibration_model(calibration, critic, spec.revision, spec.adapter, force_calibration_model)
        return critic

    failed: list[BaseException] = []
    limits = Limits(
        max_batch=max_batch,
        max_wait_ms=max_wait_ms,
        max_body_bytes=max(1, int(max_body_mb * MIB)),
        max_images=max_images,
        max_image_pixels=max_image_pixels,
        max_queue=max_queue,
        timeout=timeout,
        threads=threads,
    )
    server: uvicorn.Server | None = None

    def loaded_or_failed(critic=None, err: BaseException | None = None):
        if err is not None:
            failed.append(err)
            server.should_exit = True  # the error is reported once the server has stopped
            return critic
        shapes = f", {critic.fixed_shapes.describe()}" if critic.fixed_shapes else ""
        calibrated = f", calibrated to {calibration.label}" if calibration is not None else ""
        stderr.print(f"Ready on http://{_url_host(host)}:{port} (docs at /docs): {critic.loaded}; max batch "
                     f"{max_batch}, max wait {max_wait_ms:g} ms{shapes}{calibrated}", markup=False)  # fmt: skip
        return critic

    def load_and_report():
        return loaded_or_failed(load())

    service = Service(load_and_report, limits, api_key=api_key, calibration=calibration,
                      on_load_error=lambda err: loaded_or_failed(err=err))  # fmt: skip
    config = uvicorn.Config(
        create_app(service),
        host=host,
        port=port,
        log_level="info",
        access_log=access_log,
        lifespan="on",
        # Requests in flight at a SIGTERM get their own timeout to finish, then a little more.
        timeout_graceful_shutdown=int(timeout) + 5,
    )
    server = uvicorn.Server(config)
    stderr.print(f"Starting on http://{_url_host(host)}:{port}; loading {spec.model or 'the default model'}...",
                 markup=False)  # fmt: skip
    # uvicorn drains on SIGTERM, then raises the signal again with the handler it found installed: this one makes
    # that a no-op, so a drained service exits 0 instead of dying by the signal.
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: None)
    try:
        server.run()
    finally:
        signal.signal(signal.SIGTERM, previous)
    if failed:
        raise failed[0]
    if not server.started:
        from vcritic.errors import VcriticError

        raise VcriticError(f"could not listen on {host}:{port}", hint="is the port in use? pick another with --port")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
