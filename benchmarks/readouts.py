"""Seven outputs per image (MOS, five attributes, P(AI-generated)) for about the price of one, measured in one run.

On the same images and the same ~50M-parameter random LLaVA (built here from a config), times four ways of
getting numbers out of a multimodal model and prints images/s, the ratios and the peak memory of each:

1. generate-and-parse, one image at a time: ``generate`` a few tokens after the quality prompt and parse the level
   word out of the text (how LMM scores are usually read);
2. vcritic, MOS only: one batched forward pass per batch, the level-word distribution read at the answer position;
3. vcritic, all seven outputs: the image and the shared prompt prefix encoded once, the seven question suffixes
   read from its KV cache as one batch (``vcritic.inference.shared_prefix``);
4. seven separate vcritic passes, one question each.

It also prints the largest difference between (3) and (4), which is exactly 0: each question meets the same
shapes whatever else is asked (issue 17). Peak memory is the process's resident set (CPU) or the CUDA allocator's
peak, per mode. CPU time is this process's (all its threads): with ``--workers 0`` that is the whole pipeline, and
on a loaded machine it is a steadier figure than the wall clock.

    python benchmarks/readouts.py                              # CPU-sized random LLaVA, 48 images
    python benchmarks/readouts.py --device cuda --images 256 --batch-size 32 --model /ckpt
"""

from __future__ import annotations

import argparse
import os
import re
import tempfile
import threading
import time
from pathlib import Path

from throughput import make_images


class PeakMemory:
    """Peak memory while the block runs: CUDA allocator peak, or resident set size sampled every 2 ms on CPU."""

    def __init__(self, device):
        self.device = device
        self.peak = 0.0

    def __enter__(self):
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            return self
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss_mib())
            time.sleep(0.002)

    def __exit__(self, *exc):
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated() / 2**20
        else:
            self._stop.set()
            self._thread.join()
            self.peak = max(self.peak, _rss_mib())


def _rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def generate_and_parse(critic, paths, max_new_tokens: int) -> tuple[list[float | None], int]:
    """The usual way: per image, generate a few tokens and look for a level word in the text."""
    import torch

    from vcritic.base.images import load_image
    from vcritic.readout.prompts import LEVELS, QUALITY

    values = dict((word.strip(), value) for word, value in LEVELS)
    pattern = re.compile(r"\b(" + "|".join(values) + r")\b", re.IGNORECASE)
    scores, parsed = [], 0
    for path in paths:
        inputs = critic.to_device(critic.encoder.encode(QUALITY, [load_image(path)]))
        with torch.inference_mode():
            ids = critic.model.generate(
                **inputs, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=critic.encoder.pad_token_id
            )
        text = critic.tokenizer.decode(ids[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
        found = pattern.search(text)
        scores.append(values[found.group(1).lower()] if found else None)
        parsed += found is not None
    return scores, parsed


def prefix_cache_report(critic, paths, questions) -> str:
    """The size of one batch's prefix KV cache and what the question read-outs add to it: nothing where the cache
    is cropped back after each question, one copy at a time where it cannot be (recurrent or sliding-window
    layers). Before issue 17 the cache was repeated once per question for one batched read of all suffixes."""
    import torch

    from vcritic.base.images import load_image
    from vcritic.inference.shared_prefix import encode_prefix
    from vcritic.model.compat import crop_restores

    batch = critic.encoder.collate_questions([critic.encoder.encode_questions(questions, load_image(p)) for p in paths])
    if "prefix" not in batch:
        return "prefix cache: none (full prompts, one batch per question)"
    with torch.inference_mode():
        model, _, cache = encode_prefix(critic, batch["prefix"])
    mib = _tensor_bytes([vars(layer) for layer in cache.layers]) / 2**20
    cropped = crop_restores(model, cache)
    extra = "cropped back after each question: +0" if cropped else f"a copy per question: +{mib:.1f}"
    return (f"prefix cache of a batch of {len(paths)}: {mib:.1f} MiB; {len(questions)} read-outs, {extra} MiB at a "
            f"time (before: repeated per question, {len(questions) * mib:.1f} MiB)")  # fmt: skip


def _tensor_bytes(value) -> int:
    import torch

    if isinstance(value, torch.Tensor):
        return value.nbytes
    if isinstance(value, dict):
        value = list(value.values())
    return sum(_tensor_bytes(v) for v in value) if isinstance(value, list | tuple) else 0


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """The model options these CPU benchmarks share (also used by describe.py)."""
    parser.add_argument("--model", help="checkpoint (default: a random LLaVA built from a config, see --hidden)")
    parser.add_argument("--hidden", type=int, default=512, help="random model: hidden size of vision and text")
    parser.add_argument("--layers", type=int, default=10, help="random model: layers of vision tower and decoder")
    parser.add_argument("--image-size", type=int, default=224, help="random model: input size (patch 14)")
    parser.add_argument("--device", default=None)
    parser.add_argument("--dtype", default=None)


def load_benchmark_critic(args: argparse.Namespace, tmp_path: Path):
    """``--model``, or a random LLaVA built from ``--hidden/--layers/--image-size`` under ``tmp_path``, loaded
    through ``load_critic``; returns the critic and a name for the report."""
    from vcritic.inference.loading import load_critic
    from vcritic.testing import build_llava

    if args.model:
        return load_critic(args.model, device=args.device, dtype=args.dtype), args.model
    model = build_llava(tmp_path / "model", hidden=args.hidden, layers=args.layers, image_size=args.image_size)
    size = f"hidden {args.hidden}, {args.layers}+{args.layers} layers, {args.image_size} px"
    return load_critic(str(model), device=args.device, dtype=args.dtype), f"random LLaVA ({size})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_options(parser)
    parser.add_argument("--images", type=int, default=48)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--workers", type=int, default=None, help="decode workers for vcritic (default: vcritic's)")
    parser.add_argument("--new-tokens", type=int, default=4, help="tokens generated per image in mode 1")
    args = parser.parse_args()

    import torch
    from PIL import Image

    from vcritic.pipeline.scoring import default_workers, score_paths
    from vcritic.readout.tasks import TASKS, task_questions

    every = tuple(TASKS)
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        critic, name = load_benchmark_critic(args, tmp_path)
        paths = make_images(tmp_path, args.images)
        workers = default_workers() if args.workers is None else args.workers
        n_params = sum(p.numel() for p in critic.model.parameters())
        tokens = critic.encoder.encode(task_questions(["mos"])[0], [Image.new("RGB", (64, 48))])
        print(f"model: {name}, {n_params / 1e6:.1f} M parameters, {tokens['input_ids'].shape[1]} prompt tokens")
        print(f"device: {critic.device}, dtype: {str(critic.dtype).removeprefix('torch.')}, images: {len(paths)}, "
              f"batch size {args.batch_size}, workers {workers}, torch threads {torch.get_num_threads()}, "
              f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")  # fmt: skip

        # Warm-up: first-call allocations and kernel choice for every path measured below.
        list(score_paths(critic, paths[:2], tasks=every, batch_size=2, workers=0))
        generate_and_parse(critic, paths[:1], args.new_tokens)

        def run(label, fn):
            with PeakMemory(critic.device) as memory:
                start, cpu = time.perf_counter(), time.process_time()
                result = fn()
                if critic.device.type == "cuda":
                    torch.cuda.synchronize()
                elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
            return label, (elapsed, cpu), memory.peak, result

        def vcritic(**options):
            rows = list(score_paths(critic, paths, batch_size=args.batch_size, workers=workers, **options))
            assert all(row.error is None for row in rows), [row.error for row in rows if row.error][:3]
            return rows

        def separate():
            return [vcritic(questions=(question,)) for question in task_questions(every)]

        results = [
            run("1 generate-and-parse, one image at a time",
                lambda: generate_and_parse(critic, paths, args.new_tokens)),
            run("2 vcritic MOS only", lambda: vcritic(tasks=("mos",))),
            run("3 vcritic all seven outputs", lambda: vcritic(tasks=every)),
            run("4 seven separate vcritic passes", separate),
        ]  # fmt: skip
        base, base_cpu = results[1][1]
        print(f"{'mode':<44} {'outputs':>7} {'s':>8} {'img/s':>8} {'x MOS-only time':>16} {'CPU ms/img':>10} "
              f"{'x MOS-only CPU':>15} {'peak MiB':>9}")  # fmt: skip
        for (label, (elapsed, cpu), peak, _), outputs in zip(results, (1, 1, 7, 7), strict=True):
            print(f"{label:<44} {outputs:>7} {elapsed:>8.2f} {len(paths) / elapsed:>8.2f} "
                  f"{elapsed / base:>15.2f}x {1000 * cpu / len(paths):>10.1f} {cpu / base_cpu:>14.2f}x "
                  f"{peak:>9.0f}")  # fmt: skip

        _, parsed = results[0][3]
        all_rows, one_by_one = results[2][3], results[3][3]
        drift = 0.0
        for k, question in enumerate(task_questions(every)):
            for row, single in zip(all_rows, one_by_one[k], strict=True):
                if question.name == "quality":
                    a, b = row.mos, single.mos
                elif question.name == "authenticity":
                    a, b = 100 * row.p_ai_generated, 100 * single.p_ai_generated
                else:
                    a, b = row.attributes[question.name], single.attributes[question.name]
                drift = max(drift, abs(a - b))
        t1, t2, t3, t4 = (r[1][0] for r in results)
        print(
            f"MOS only vs generate-and-parse: {t1 / t2:.1f}x faster (target >= 4x); "
            f"generate-and-parse found a level word for {parsed} of {len(paths)} images"
        )
        print(
            f"all seven vs MOS only: {t3 / t2:.2f}x the time (target <= 2.5x, aim 1.5x); "
            f"seven separate passes: {t4 / t2:.2f}x, so sharing saves {t4 / t3:.1f}x"
        )
        print(f"largest difference all-seven vs separate passes: {drift:.2e} (0-100 scale; P(AI) x 100)")
        print(prefix_cache_report(critic, paths[: args.batch_size], task_questions(every)))
        print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")  # fmt: skip


if __name__ == "__main__":
    main()
