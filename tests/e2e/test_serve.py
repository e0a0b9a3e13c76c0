"""``vcritic serve``: real servers (``python -m vcritic serve`` subprocesses on 127.0.0.1), real HTTP requests.

The server tests are slow (three model loads, minutes on a busy machine); the batcher's out-of-memory rule is tested
without a server (tests/unit/test_serve_without_a_server.py). Three servers on a tiny LLaVA start together once for
the module (loading is most of their cost):
- ``strict``: --reproducible, an API key and small limits;
- ``slow``: default mode, a small queue and a long batching wait (for 429 and timeouts);
- ``drain``: taken down by SIGTERM with requests in flight.
"""

from __future__ import annotations

import asyncio
import csv
import io
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image
from support.processes import process_env

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")

from vcritic.serve.client import AsyncClient, Client, ServiceError  # noqa: E402

KEY = "s3cret-key"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """One ``vcritic serve`` subprocess; :meth:`wait_ready` records the /health statuses seen on the way."""

    def __init__(self, model: Path, home: Path, *args: str):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = home / f"serve-{self.port}.log"
        env = process_env(VCRITIC_HOME=str(home), HF_HOME=str(home / "hf"), HF_HUB_OFFLINE="1")
        env.pop("VCRITIC_API_KEY", None)
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "vcritic", "serve", "-m", str(model), "--port", str(self.port), *args],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.health: list[int] = []

    def wait_ready(self, timeout: float = 240.0) -> Server:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log.read_text()
            try:
                status = httpx.get(self.url + "/health", timeout=5).status_code
            except httpx.TransportError:
                time.sleep(0.05)
                continue
            self.health.append(status)
            if status == 200:
                return self
            time.sleep(0.05)
        raise AssertionError(f"not ready after {timeout} s:\n{self.log.read_text()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(30)


@pytest.fixture(scope="module")
def calibration(tiny_models, tmp_path_factory) -> Path:
    """A calibration.json for the tiny LLaVA, as `vcritic calibrate` writes one: MOS 0-100 onto a 1-5 scale."""
    import numpy as np

    from vcritic.evaluation.calibration import TargetScale, calibrate, model_identity

    x = np.linspace(1, 99, 60)
    labels = 1 + 4 / (1 + np.exp(-(x - 50) / 12))
    fitted = calibrate(x, labels, target=TargetScale("Test MOS", 1, 5), model=model_identity(str(tiny_models("llava"))),
                       dataset="synthetic")  # fmt: skip
    path = tmp_path_factory.mktemp("serve-calibration") / "calibration.json"
    fitted.save(path)
    return path


@pytest.fixture(scope="module")
def servers(tiny_models, tmp_path_factory, calibration):
    model = tiny_models("llava")
    home = tmp_path_factory.mktemp("serve")
    started = {
        "strict": Server(model, home, "--reproducible", "--readout", "q-realign", "--api-key", KEY, "--max-images", "8",
                         "--max-body-mb", "4", "--max-image-pixels", "1000000", "--threads", "2",
                         "--calibration", str(calibration)),
        "slow": Server(model, home, "--readout", "q-realign", "--max-wait-ms", "1500", "--max-queue", "4",
                       "--max-images", "4"),
        "drain": Server(model, home, "--max-wait-ms", "1000", "--timeout", "60"),
    }  # fmt: skip
    try:
        for server in started.values():
            server.wait_ready()
        yield started
    finally:
        for server in started.values():
            server.stop()


@pytest.fixture(scope="module")
def images(tmp_path_factory, sample_images) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("serve-images")
    paths = {}
    for name, image in sample_images.items():
        paths[name] = folder / f"{name}.png"
        image.save(paths[name])
    return paths


@pytest.fixture(scope="module")
def cli_rows(images, tiny_models, tmp_path_factory, calibration) -> dict[str, dict[str, str]]:
    """`vcritic score --reproducible --readout q-realign --tasks all --calibration` on the same files, by name."""
    out = tmp_path_factory.mktemp("serve-cli") / "scores.csv"
    args = ["score", *map(str, images.values()), "-m", str(tiny_models("llava")), "--reproducible", "--tasks", "all",
            "--readout", "q-realign", "-o", str(out), "--workers", "0", "--calibration", str(calibration)]  # fmt: skip
    from vcritic.cli.app import main

    assert main(args) == 0
    with open(out, newline="") as handle:
        return {Path(row["path"]).name: row for row in csv.DictReader(handle)}


def _metric(url: str, name: str) -> float:
    text = httpx.get(url + "/metrics", timeout=10).text
    found = re.search(rf"^{re.escape(name)} ([0-9.e+-]+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


@pytest.mark.slow
def test_health_answers_503_while_loading_then_200(servers):
    for server in servers.values():
        assert server.health[-1] == 200
    # Binding comes before loading, and loading takes seconds: at least one server was seen loading.
    assert any(503 in server.health for server in servers.values())
    assert all(set(server.health) <= {200, 503} for server in servers.values())


@pytest.mark.slow
def test_api_key_and_model_description(servers):
    url = servers["strict"].url
    assert httpx.get(url + "/v1/model").status_code == 401
    wrong = httpx.get(url + "/v1/model", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and "API key" in wrong.json()["error"]
    posted = httpx.post(url + "/v1/score", content=b"x", headers={"Content-Type": "image/png"})
    assert posted.status_code == 401
    with Client(url, api_key=KEY) as client:
        info = client.model()
    assert info["family"] == "llava" and info["readout"] == "q-realign" and info["device"] == "cpu"
    assert info["reproducible"].startswith("fixed shapes of 8 rows") and info["resolution"]
    assert info["limits"]["max_images"] == 8 and info["calibrated_scale"] == "Test MOS (1-5)"
    assert httpx.get(url + "/health").status_code == 200  # health and metrics need no key
    assert "vcritic_requests_total" in httpx.get(url + "/metrics").text
    assert httpx.get(url + "/openapi.json").json()["paths"].keys() >= {"/v1/score", "/v1/compare", "/health"}


@pytest.mark.slow
def test_scores_equal_vcritic_score_on_the_same_files(servers, images, cli_rows):
    from vcritic.pipeline.scoring import format_number

    with Client(servers["strict"].url, api_key=KEY) as client:
        rows = client.score(list(images.values())[:4], tasks="all")
        raw = httpx.post(servers["strict"].url + "/v1/score?tasks=all&name=raw.png", headers={"X-API-Key": KEY,
                         "Content-Type": "image/png"}, content=images["chelsea"].read_bytes()).json()  # fmt: skip
    assert raw["results"][0]["path"] == "raw.png"
    rows.append({**raw["results"][0], "path": "chelsea.png"})
    for row in rows:
        expected = cli_rows[row["path"]]
        assert list(row) == list(expected)  # the same fields, in the same order
        # A quality-only judge asked for every task: the service marks the untrained ones as the CLI does.
        assert row["untrained"] == expected["untrained"] == "attributes,authenticity"
        # --calibration: the calibrated MOS as score --calibration writes it (its value is compared below)
        assert row["calibrated_scale"] == expected["calibrated_scale"] == "Test MOS (1-5)"
        assert 1 <= row["mos_calibrated"] <= 5 and row["mos_calibrated"] != row["mos"]
        for field, value in row.items():
            if field not in ("path", "scale", "error", "untrained", "calibrated_scale"):
                digits = 6 if field == "p_ai_generated" else 4
                assert format_number(value, digits) == expected[field], field
        assert row["error"] is None and row["scale"] == expected["scale"] == "0-100"


@pytest.mark.slow
def test_reproducible_score_is_bitwise_the_same_alone_or_among_64_concurrent_requests(servers, images):
    url = servers["strict"].url
    names = list(images)
    with Client(url, api_key=KEY) as client:
        alone = {name: client.score(images[name]) for name in names}
    batches_before = _metric(url, "vcritic_batch_size_count")

    async def concurrently():
        async with AsyncClient(url, api_key=KEY) as client:
            return await asyncio.gather(*(client.score(images[names[i % len(names)]]) for i in range(64)))

    together = asyncio.run(concurrently())
    batches = _metric(url, "vcritic_batch_size_count") - batches_before
    assert batches < 64  # they were batched together, not run one by one
    for i, row in enumerate(together):
        first = alone[names[i % len(names)]]
        assert (row["mos"], row["mos_std"]) == (first["mos"], first["mos_std"])  # bitwise: exact float equality


@pytest.mark.slow
def test_one_corrupt_image_among_good_ones(servers, images):
    good = images["astronaut"].read_bytes()
    truncated = images["coffee"].read_bytes()[:3000]
    with Client(servers["strict"].url, api_key=KEY) as client:
        alone = client.score(good)
        rows = client.score([good, b"not an image at all", images["rocket"], truncated])
    assert rows[0]["mos"] == alone["mos"] and rows[0]["error"] is None
    assert rows[1]["mos"] is None and "not an image" in rows[1]["error"]
    assert rows[2]["mos"] is not None and rows[2]["path"] == "rocket.png"
    assert rows[3]["mos"] is None and rows[3]["error"]


@pytest.mark.slow
def test_limits_answer_413_with_a_json_error(servers, images, tmp_path):
    url = servers["strict"].url
    headers = {"X-API-Key": KEY}
    big = os.urandom((4 << 20) + 10)
    over = httpx.post(url + "/v1/score", content=big, headers={**headers, "Content-Type": "image/png"})
    assert over.status_code == 413 and "body" in over.json()["error"]
    small = images["camera"].read_bytes()
    many = [("images", (f"{i}.png", small)) for i in range(9)]
    too_many = httpx.post(url + "/v1/score", files=many, headers=headers)
    assert too_many.status_code == 413 and "limit of 8" in too_many.json()["error"]
    # A bomb: 144 megapixels that compress to a few KB. Refused from its header, neighbours scored.
    bomb = io.BytesIO()
    Image.new("1", (12000, 12000)).save(bomb, format="PNG")
    assert len(bomb.getvalue()) < 200_000
    with Client(url, api_key=KEY) as client:
        rows = client.score([bomb.getvalue(), small])
    assert "over the limit of 1000000 pixels" in rows[0]["error"] and rows[0]["mos"] is None
    assert rows[1]["error"] is None and rows[1]["mos"] is not None
    with Client(url, api_key=KEY) as client, pytest.raises(ServiceError, match="unknown task"):
        client.score(small, tasks="sharpnes")


@pytest.mark.slow
def test_compare_is_order_symmetric_and_takes_many_pairs(servers, images):
    a, b, c = images["astronaut"], images["chelsea"], images["coffee"]
    with Client(servers["strict"].url, api_key=KEY) as client:
        ab = client.compare(a, b)
        ba = client.compare(b, a)
        rows = client.compare([(a, b), (c, a), (a, b"broken")])
    assert ab["p_a_better"] + ba["p_a_better"] == pytest.approx(1.0, abs=1e-6)
    assert ab["better"] == ("a" if ab["p_a_better"] > 0.5 else "b") and (ab["a"], ab["b"]) == (
        "astronaut.png",
        "chelsea.png",
    )
    assert rows[0]["p_a_better"] == ab["p_a_better"]  # fixed shapes: the same alone or with other pairs
    assert 0 < rows[1]["p_a_better"] < 1
    assert rows[2]["p_a_better"] is None and rows[2]["error"].startswith("image b:")


@pytest.mark.slow
def test_default_mode_scores_match_the_cli_within_rounding(servers, images, cli_rows):
    with Client(servers["slow"].url) as client:
        rows = client.score(list(images.values())[:4], tasks="mos")
    for row in rows:
        assert row["mos"] == pytest.approx(float(cli_rows[row["path"]]["mos"]), abs=1e-3)


@pytest.mark.slow
def test_full_queue_answers_429_and_a_late_request_504(servers, images):
    url = servers["slow"].url
    small = images["camera"].read_bytes()

    async def scenario():
        async with httpx.AsyncClient(base_url=url, timeout=60) as http:
            three = [("images", (f"{i}.png", small)) for i in range(3)]
            first = asyncio.create_task(http.post("/v1/score", files=three))
            # Wait until its three images hold places in the queue (the batch then waits 1.5 s for more).
            for _ in range(200):
                if _metric(url, "vcritic_queue_depth") >= 3:
                    break
                await asyncio.sleep(0.02)
            full = await http.post("/v1/score", files=[("images", ("a.png", small)), ("images", ("b.png", small))])
            late = await http.post("/v1/score?timeout=0.2", content=small, headers={"Content-Type": "image/png"})
            return await first, full, late

    first, full, late = asyncio.run(scenario())
    assert full.status_code == 429 and "queue is full" in full.json()["error"] and full.headers["retry-after"]
    assert late.status_code == 504 and "within 0.2 s" in late.json()["error"]
    assert first.status_code == 200 and [row["error"] for row in first.json()["results"]] == [None] * 3
    assert _metric(url, "vcritic_queue_depth") == 0


@pytest.mark.slow
def test_sigterm_answers_requests_in_flight_and_exits_0(servers, images):
    server = servers["drain"]
    data = [images[name].read_bytes() for name in images]

    async def scenario():
        async with AsyncClient(server.url, retries=0) as client:
            sent = [asyncio.create_task(client.score(data[i % len(data)])) for i in range(8)]
            for _ in range(400):  # all eight admitted; the batch waits up to 1 s for more
                if _metric(server.url, "vcritic_queue_depth") >= 8:
                    break
                await asyncio.sleep(0.02)
            server.process.send_signal(signal.SIGTERM)
            return await asyncio.gather(*sent)

    rows = asyncio.run(scenario())
    assert len(rows) == 8 and all(row["error"] is None and row["mos"] is not None for row in rows)
    assert server.process.wait(60) == 0, server.log.read_text()
    with pytest.raises(httpx.TransportError):
        httpx.get(server.url + "/health", timeout=5)


@pytest.mark.slow
def test_a_service_batch_out_of_memory_is_halved_and_every_request_answered(tiny_models, images):
    """Six one-image requests merged into one batch of a real model, whose forward raises torch's CUDA OOM above
    three rows (tests/test_memory.py's hook): the batch runs again as two of three, and each request gets its row."""
    from support.memory import OutOfMemoryAbove

    from vcritic.inference.loading import load_critic
    from vcritic.serve.service import Limits, Service

    data = [(path.name, path.read_bytes()) for path in images.values()]
    service = Service(lambda: load_critic(tiny_models("llava"), device="cpu"),
                      Limits(max_batch=len(data), max_wait_ms=10_000, threads=2))  # fmt: skip

    async def scenario():
        await service.start()
        try:
            while service.critic is None:
                assert service.load_error is None
                await asyncio.sleep(0.02)
            together = await service.score(data, ["mos"])  # one request: one batch of six
            with OutOfMemoryAbove(service.critic.model, limit=3) as hook:
                apart = await asyncio.gather(*(service.score([item], ["mos"]) for item in data))
            return together, apart, hook.seen
        finally:
            await service.stop()

    together, apart, seen = asyncio.run(scenario())
    assert seen == [6, 3, 3]  # merged, out of memory, then halved
    assert service.batcher.plan.current == 3 and service.batcher.plan.halvings == 1
    assert [rows[0]["path"] for rows in apart] == [name for name, _ in data]
    for rows, want in zip(apart, together, strict=True):
        assert len(rows) == 1 and rows[0]["error"] is None
        assert rows[0]["mos"] == pytest.approx(want["mos"], abs=1e-4)


def test_a_calibration_for_another_model_is_refused_before_anything_starts(calibration, tiny_models, tmp_path,
                                                                           capsys):  # fmt: skip
    from vcritic.cli.app import main

    other = tmp_path / "other-model"
    other.mkdir()
    assert main(["serve", "-m", str(other), "--calibration", str(calibration), "--port", str(_free_port())]) == 1
    err = " ".join(capsys.readouterr().err.split())
    assert f"was fitted for {tiny_models('llava')}, not for {other}" in err and "--force-calibration-model" in err
    assert "Starting on" not in err and "Traceback" not in err
    assert main(["serve", "-m", "x", "--calibration", str(tmp_path / "none.json")]) == 1
    assert "none.json" in capsys.readouterr().err
