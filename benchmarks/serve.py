"""``vcritic serve`` under load: throughput and latency for 1, 8 and 64 concurrent clients, next to offline
``vcritic score`` on the same images and machine.

Starts ``python -m vcritic serve`` on 127.0.0.1 (a free port), times it from start to ready (/health 200), then for
each client count runs a bounded number of requests, each one image as the raw body (the reward-loop pattern:
many small concurrent requests, merged by the service's dynamic batching), and prints images/s, p50 and p99
latency and the mean model batch size (from /metrics), with the service's own p99 (the upper bound of its latency
histogram bucket, from the request's dispatch to its answer), which tells a tail in the service from one in the
client sharing the machine. Every image's scores are kept, so it also prints how far a score moved between being
read alone and inside the batches (the default mode's tolerance; 0 with ``--reproducible``). Then the service gets
SIGTERM (its exit status is printed) and ``vcritic score`` scores the same files offline with ``--batch-size`` =
the service's ``--max-batch``; its own img/s figure (model loaded, files read) is the reference.

    python benchmarks/serve.py                              # a tiny random LLaVA built here, CPU
    python benchmarks/serve.py --model /ckpt --device cuda --images 512 --max-batch 64
    python benchmarks/serve.py --reproducible               # fixed shapes: batched == alone, bitwise

Loopback only; every loop is bounded (``--requests`` per client count).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def make_images(folder: Path, count: int) -> list[Path]:
    """Natural test images (shipped in scikit-image) at varied small sizes, as JPEG."""
    from PIL import Image
    from skimage import data

    sources = [data.astronaut(), data.chelsea(), data.coffee(), data.rocket()]
    paths = []
    for i in range(count):
        image = Image.fromarray(sources[i % len(sources)]).resize((256 + 16 * (i % 7), 192 + 16 * (i % 5)))
        path = folder / f"img{i:04d}.jpg"
        image.save(path, quality=90)
        paths.append(path)
    return paths


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def metric(url: str, name: str) -> float:
    import httpx

    text = httpx.get(url + "/metrics", timeout=30).text
    found = re.search(rf"^{re.escape(name)} ([0-9.e+-]+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def latency_buckets(url: str) -> dict[float, float]:
    """The service's own /v1/score latency histogram: upper bound (s) -> cumulative count."""
    import httpx

    text = httpx.get(url + "/metrics", timeout=30).text
    pattern = r'^vcritic_request_seconds_bucket\{endpoint="/v1/score",le="([^"]+)"\} ([0-9.e+-]+)$'
    return {float(le): float(count) for le, count in re.findall(pattern, text, re.MULTILINE)}


def bucket_quantile(before: dict[float, float], after: dict[float, float], q: float) -> float:
    """The upper bound of the bucket holding the q-quantile of the requests between two readings."""
    counts = {le: after[le] - before.get(le, 0.0) for le in sorted(after)}
    total = counts[float("inf")]
    return next(le for le, count in counts.items() if count >= q * total)


async def load(url: str, bodies: list[tuple[str, bytes]], clients: int, requests: int):
    """``requests`` single-image requests from ``clients`` concurrent clients: (seconds, latencies, mos by name)."""
    import httpx

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    latencies: list[float] = []
    seen: dict[str, list[float]] = {}
    counter = iter(range(requests))

    async def client(http):
        for i in counter:  # shared: the clients take the next request number until all are sent
            name, body = bodies[i % len(bodies)]
            started = time.perf_counter()
            response = await http.post("/v1/score", content=body, headers={"Content-Type": "image/jpeg"})
            latencies.append(time.perf_counter() - started)
            response.raise_for_status()
            seen.setdefault(name, []).append(response.json()["results"][0]["mos"])

    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as http:
        started = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(clients)))
        return time.perf_counter() - started, latencies, seen


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="checkpoint (default: a tiny random LLaVA from vcritic.testing)")
    parser.add_argument("--device", default=None)
    parser.add_argument("--dtype", default=None)
    parser.add_argument("--images", type=int, default=64, help="distinct image files (default 64)")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 64])
    parser.add_argument("--requests", type=int, default=None,
                        help="requests per client count (default: max(32, 4 x clients))")  # fmt: skip
    parser.add_argument("--max-batch", type=int, default=32)
    parser.add_argument("--max-wait-ms", type=float, default=10.0)
    parser.add_argument("--reproducible", action="store_true")
    parser.add_argument("--threads", type=int, default=None, help="the service's decode/preprocess threads")
    args = parser.parse_args()

    import httpx

    with tempfile.TemporaryDirectory(prefix="vcritic-serve-bench-") as tmp:
        root = Path(tmp)
        model = args.model
        if model is None:
            from vcritic.testing import build_tiny

            model = str(build_tiny("llava", root / "llava"))
        (root / "images").mkdir()
        paths = make_images(root / "images", args.images)
        bodies = [(path.name, path.read_bytes()) for path in paths]
        options = [*(["--device", args.device] if args.device else []),
                   *(["--dtype", args.dtype] if args.dtype else []),
                   *(["--reproducible"] if args.reproducible else [])]  # fmt: skip
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        log = root / "serve.log"
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1]), *sys.path])}
        started = time.perf_counter()
        with open(log, "wb") as out:
            server = subprocess.Popen(
                [sys.executable, "-m", "vcritic", "serve", "-m", model, "--port", str(port), "--max-batch",
                 str(args.max_batch), "--max-wait-ms", str(args.max_wait_ms), *options,
                 *(["--threads", str(args.threads)] if args.threads else [])],
                stdout=out, stderr=subprocess.STDOUT, env=env,
            )  # fmt: skip
        try:
            for _ in range(6000):  # at most ~10 minutes
                if server.poll() is not None:
                    raise SystemExit(f"the service exited:\n{log.read_text()}")
                try:
                    if httpx.get(url + "/health", timeout=5).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.1)
            ready = time.perf_counter() - started
            loaded = re.search(r"loaded in ([0-9.]+) s", log.read_text())
            print(f"start to ready: {ready:.1f} s (model load {loaded.group(1) if loaded else '?'} s of it)")
            asyncio.run(load(url, bodies[:4], 4, 8))  # warm-up: first-call costs are not throughput

            print(f"{'clients':>7} {'requests':>8} {'img/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'mean batch':>10} "
                  f"{'server p99 <=':>13}")  # fmt: skip
            seen: dict[str, list[float]] = {}
            rates = {}
            for clients in args.clients:
                requests = args.requests or max(32, 4 * clients)
                batches, items = metric(url, "vcritic_batch_size_count"), metric(url, "vcritic_batch_size_sum")
                buckets = latency_buckets(url)
                seconds, latencies, found = asyncio.run(load(url, bodies, clients, requests))
                batches = metric(url, "vcritic_batch_size_count") - batches
                items = metric(url, "vcritic_batch_size_sum") - items
                for name, values in found.items():
                    seen.setdefault(name, []).extend(values)
                rates[clients] = requests / seconds
                print(f"{clients:>7} {requests:>8} {rates[clients]:>8.1f} {1000 * statistics.median(latencies):>8.1f} "
                      f"{1000 * percentile(latencies, 0.99):>8.1f} {items / max(batches, 1):>10.1f} "
                      f"{bucket_quantile(buckets, latency_buckets(url), 0.99):>11g} s")  # fmt: skip
            spread = max((max(v) - min(v) for v in seen.values() if len(v) > 1), default=0.0)
            print(
                f"same image, scores across batch compositions (alone .. {max(args.clients)} clients): "
                f"max |delta MOS| = {spread:.3g} (0-100 scale){' [--reproducible]' if args.reproducible else ''}"
            )
        finally:
            if server.poll() is None:
                server.send_signal(signal.SIGTERM)
            code = server.wait(120)
        print(f"service exit status after SIGTERM: {code}")

        offline = subprocess.run(
            [sys.executable, "-m", "vcritic", "score", *map(str, paths), "-m", model, "-o", str(root / "offline.csv"),
             "--batch-size", str(args.max_batch), *options],
            capture_output=True, text=True, env=env,
        )  # fmt: skip
        rate = re.search(r"\(([0-9.]+) img/s", offline.stderr)
        if offline.returncode != 0 or rate is None:
            raise SystemExit(f"offline vcritic score failed:\n{offline.stderr}")
        offline_rate = float(rate.group(1))
        print(f"offline vcritic score, {len(paths)} files, batch size {args.max_batch}: {offline_rate:.1f} img/s")
        for clients, served in rates.items():
            print(f"  service at {clients} client(s): {served / offline_rate:.2f}x offline")


if __name__ == "__main__":
    main()
