"""The file input side alone (no model forward): what each image costs on a CPU core, and where.

Scoring reads files in DataLoader workers (decode, resize, normalise, patchify, tokenise, collate, cast to the
model's dtype) while the main process runs the model; this measures that pipeline with no model, so the most end to
end can reach is known without a GPU. Figures are CPU time, not wall clock, so they hold on a shared machine:

- per image, in one process on one thread, by phase: JPEG decode, image processor + tokenising, collate + cast,
  for vcritic's path and the stock one (pixels cast once after padding) in turn;
- per loader run (``vcritic.pipeline.scoring._loader``, the real one) for each worker count: wall img/s, time to the
first
  batch, the main process's CPU per image (what stays serial however many workers there are: receiving batches,
  pinning on CUDA) and the workers' CPU per image;
- the main process's top functions (cProfile) in the run with the most workers.

::

    python benchmarks/input_pipeline.py                                   # tiny Qwen2.5-VL processor, 448 + 1024x768
    python benchmarks/input_pipeline.py --images 1000 --workers 0 1 2     # the issue-17 CPU run
    python benchmarks/input_pipeline.py --device cuda --workers 4 8 15    # on a GPU machine: pinning included

The processor is a tiny random Qwen2.5-VL's with the released checkpoint's pixel budget, so token and patch counts
(256 visual tokens at 448x448, 999 at 1024x768) are those of the 7B; ``--model`` takes a real checkpoint instead.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _main_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)  # every thread of this process (pin-memory thread included)
    return usage.ru_utime + usage.ru_stime


def phases(critic, paths, batch_size: int, dtype) -> dict[str, dict[str, float]]:
    """CPU ms per image of each step, in this process on one thread: ``now`` (vcritic's path: pixels cast before
    patchifying and before padding) and ``stock`` (cast once after padding, as before), image by image in turn so
    that both see the same machine load."""
    import contextlib

    import torch

    from vcritic.base.images import load_image
    from vcritic.pipeline.scoring import _Collate, pixels_cast_early
    from vcritic.readout.prompts import QUALITY

    clock = time.thread_time
    processor = critic.encoder.processor
    ways = {"now": (lambda: pixels_cast_early(processor, dtype), _Collate(critic.encoder, True, dtype)),
            "stock": (contextlib.nullcontext, _StockCollate(critic.encoder, dtype))}  # fmt: skip
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in a DataLoader worker
    spent = {way: {"decode": 0.0, "preprocess_tokenise": 0.0, "collate_cast": 0.0} for way in ways}
    batches: dict[str, list] = {way: [] for way in ways}
    try:
        for index, path in enumerate(paths):
            for way, (early, collate) in ways.items():
                start = clock()
                image = load_image(path)
                spent[way]["decode"] += clock() - start
                start = clock()
                with early():
                    encodings = critic.encoder.encode_questions([QUALITY], image)
                spent[way]["preprocess_tokenise"] += clock() - start
                batches[way].append((index, [encodings], None))
                if len(batches[way]) == batch_size or index == len(paths) - 1:
                    start = clock()
                    collate(batches[way])
                    spent[way]["collate_cast"] += clock() - start
                    batches[way] = []
    finally:
        torch.set_num_threads(threads)
    result = {}
    for way, parts in spent.items():
        result[way] = {name: 1000 * seconds / len(paths) for name, seconds in parts.items()}
        result[way]["total"] = sum(result[way].values())
    return result


class _StockCollate:
    """The collate before issue 17: pad in float32, then cast the whole batch."""

    def __init__(self, encoder, dtype):
        from vcritic.pipeline.scoring import _Collate

        self.collate, self.dtype = _Collate(encoder, True, None), dtype

    def __call__(self, samples):
        from vcritic.inference.runner import cast_floating

        indices, errors, batch = self.collate(samples)
        return indices, errors, cast_floating(batch, self.dtype)


def loader_run(critic, paths, batch_size: int, workers: int, dtype, profile: bool = False):
    """One pass of the real loader over ``paths``; CPU seconds of this process and of its workers."""
    from vcritic.pipeline.scoring import _EncodeQuestions, _loader
    from vcritic.readout.prompts import QUALITY

    encode = _EncodeQuestions([QUALITY])
    profiler = cProfile.Profile(time.thread_time) if profile else None  # this thread's CPU, not waits
    main_cpu, child_cpu, start = _main_cpu(), _children_cpu(), time.perf_counter()
    first = None
    if profiler:
        profiler.enable()
    loader = _loader(critic, paths, 0, encode, batch_size, workers, True, dtype)
    for _ in loader:
        first = first or time.perf_counter() - start
    del loader  # joins the workers, so their CPU time is counted
    if profiler:
        profiler.disable()
    wall = time.perf_counter() - start
    main_cpu, child_cpu = _main_cpu() - main_cpu, _children_cpu() - child_cpu
    return {
        "workers": workers,
        "img_s": len(paths) / wall,
        "first_batch_s": first,
        "main_cpu_ms_per_img": 1000 * main_cpu / len(paths),
        "worker_cpu_ms_per_img": 1000 * child_cpu / len(paths) if workers else None,
    }, profiler


def top_functions(profiler, count: int = 10) -> list[tuple[str, float]]:
    stats = pstats.Stats(profiler)
    rows = sorted(stats.stats.items(), key=lambda kv: kv[1][2], reverse=True)[:count]  # by own time
    return [(f"{Path(file).name}:{line}({name})", own) for (file, line, name), (_, _, own, _, _) in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="checkpoint whose processor to use (default: a tiny Qwen2.5-VL)")
    parser.add_argument("--images", type=int, default=200, help="JPEGs per image size (default 200)")
    parser.add_argument("--sizes", default="448x448,1024x768", help="image sizes, WxH, comma-separated")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2], help="loader worker counts")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--dtype", default="bfloat16", help="the pixels' dtype, as for a bf16 model on a GPU")
    parser.add_argument("--device", default="cpu", help="cuda: the loader pins batches, as scoring does there")
    parser.add_argument("--folder", help="keep the JPEGs here (reused when present) instead of a temporary folder")
    parser.add_argument("--out", help="JSON-lines file for the figures (default $OUT/input_pipeline.jsonl)")
    args = parser.parse_args()

    import torch
    from throughput import QWEN_PIXELS, _jpegs
    from transformers.image_utils import SizeDict

    from vcritic.inference.loading import load_critic
    from vcritic.testing import build_tiny

    out = args.out or (os.path.join(os.environ["OUT"], "input_pipeline.jsonl") if os.environ.get("OUT") else None)
    dtype = getattr(torch, args.dtype)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.folder or tmp)
        model = args.model or build_tiny("qwen2_5_vl", Path(tmp) / "model")
        critic = load_critic(model, device=args.device)
        if not args.model:
            critic.encoder.processor.image_processor.size = SizeDict(
                shortest_edge=QWEN_PIXELS[0], longest_edge=QWEN_PIXELS[1]
            )
        print(f"processor: {type(critic.encoder.processor.image_processor).__name__}, pixels cast to {args.dtype}, "
              f"batch {args.batch_size}, {args.images} JPEGs per size, device {critic.device}, "
              f"{os.cpu_count()} CPUs")  # fmt: skip
        sink = open(out, "a", encoding="utf-8") if out else None  # noqa: SIM115 - one file for the whole run
        try:
            for label in args.sizes.split(","):
                width, height = map(int, label.split("x"))
                existing = sorted((folder / label).glob("img*.jpg"))[: args.images]
                paths = existing if len(existing) == args.images else _jpegs(folder / label, args.images, width, height)
                per_phase = phases(critic, paths[: min(64, len(paths))], args.batch_size, dtype)
                records = []
                for way, parts in per_phase.items():
                    print(f"{label} {way:>5}: CPU ms per image on one thread: "
                          + ", ".join(f"{k} {v:.2f}" for k, v in parts.items()), flush=True)  # fmt: skip
                    records.append({"figure": "phases_cpu_ms_per_img", "image": label, "way": way, **parts})
                print(f"{'image':>9} {'workers':>7} {'img/s':>8} {'1st batch s':>11} {'main ms/img':>11} "
                      f"{'workers ms/img':>14}")  # fmt: skip
                for workers in args.workers:
                    profile = workers == max(args.workers) and workers > 0
                    run, profiler = loader_run(critic, paths, args.batch_size, workers, dtype, profile=profile)
                    worker_ms = run["worker_cpu_ms_per_img"]
                    print(f"{label:>9} {workers:>7} {run['img_s']:>8.1f} {run['first_batch_s']:>11.2f} "
                          f"{run['main_cpu_ms_per_img']:>11.2f} "
                          f"{'-' if worker_ms is None else f'{worker_ms:.2f}':>14}", flush=True)  # fmt: skip
                    records.append({"figure": "loader", "image": label, "batch": args.batch_size, **run})
                    if profiler:
                        top = top_functions(profiler)
                        print(f"{label}: main process, own CPU s over {len(paths)} images with {workers} workers: "
                              + "; ".join(f"{name} {own:.3f}" for name, own in top[:6]), flush=True)  # fmt: skip
                        records.append({"figure": "main_top_functions", "image": label, "workers": workers,
                                        "functions": top})  # fmt: skip
                if sink:
                    for record in records:
                        sink.write(json.dumps({"dtype": args.dtype, "device": str(critic.device), **record}) + "\n")
                    sink.flush()
        finally:
            if sink:
                sink.close()


if __name__ == "__main__":
    main()
