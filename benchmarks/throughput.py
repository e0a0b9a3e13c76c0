"""Scoring throughput and batch invariance, measured side by side in one run.

Scores the same folder of images with several (batch size, workers) settings through the real file pipeline
(`vcritic.scoring.score_paths`) and prints images/s, the speed-up over the peers' batch-size-1 inline setting, the
largest score difference from that setting (batch invariance, 0-100 scale) and, on CUDA, the peak memory.

    python benchmarks/throughput.py                        # a small random LLaVA built here (CPU-sized)
    python benchmarks/throughput.py --model /ckpt --device cuda --images 512 --batch-sizes 1 8 32
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def make_images(folder: Path, count: int) -> list[Path]:
    """Natural test images (shipped in scikit-image) resized to varied sizes, saved as JPEG and PNG."""
    from PIL import Image
    from skimage import data

    sources = [data.astronaut(), data.chelsea(), data.coffee(), data.rocket(), data.camera(), data.logo()]
    paths = []
    for i in range(count):
        image = Image.fromarray(sources[i % len(sources)])
        image = image.resize((320 + 37 * (i % 9), 240 + 29 * (i % 7)))
        path = folder / f"img{i:04d}.{'png' if image.mode == 'RGBA' or i % 2 else 'jpg'}"
        image.convert("RGB").save(path) if path.suffix == ".jpg" else image.save(path)
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="checkpoint (default: a random LLaVA, hidden 256, 4 layers, 224 px)")
    parser.add_argument("--device", default=None)
    parser.add_argument("--dtype", default=None)
    parser.add_argument("--images", type=int, default=96)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--workers", type=int, default=None, help="workers for batched runs (default: vcritic's)")
    args = parser.parse_args()

    import torch

    from vcritic.loading import load_critic
    from vcritic.scoring import default_workers, score_paths
    from vcritic.testing import build_llava

    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        model = args.model or str(build_llava(tmp_path / "model", hidden=256, layers=4, image_size=224))
        paths = make_images(tmp_path, args.images)
        critic = load_critic(model, device=args.device, dtype=args.dtype)
        workers = default_workers() if args.workers is None else args.workers
        print(f"model: {args.model or 'random LLaVA (hidden 256, 4+4 layers, 224 px, 256 image tokens)'}")
        print(f"device: {critic.device}, dtype: {str(critic.dtype).removeprefix('torch.')}, "
              f"images: {len(paths)}, torch threads: {torch.get_num_threads()}")  # fmt: skip

        # Warm-up (first-call allocations, kernel selection).
        list(score_paths(critic, paths[:4], batch_size=4, workers=0))
        settings = [(1, 0)] + [(b, workers) for b in args.batch_sizes if b != 1]
        reference = None
        print(
            f"{'batch':>5} {'workers':>7} {'img/s':>8} {'s/img':>8} {'speed-up':>8} {'max |dMOS|':>11} {'peak MiB':>9}"
        )
        base_rate = None
        for batch_size, n_workers in settings:
            if critic.device.type == "cuda":
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
            start = time.perf_counter()
            rows = list(score_paths(critic, paths, batch_size=batch_size, workers=n_workers))
            if critic.device.type == "cuda":
                torch.cuda.synchronize()
            elapsed = time.perf_counter() - start
            assert all(row.error is None for row in rows), [row.error for row in rows if row.error][:3]
            scores = [row.mos for row in rows]
            reference = reference or scores
            rate = len(rows) / elapsed
            base_rate = base_rate or rate
            drift = max(abs(a - b) for a, b in zip(scores, reference, strict=True))
            peak = torch.cuda.max_memory_allocated() / 2**20 if critic.device.type == "cuda" else float("nan")
            print(f"{batch_size:>5} {n_workers:>7} {rate:>8.2f} {1 / rate:>8.4f} {rate / base_rate:>7.2f}x "
                  f"{drift:>11.2e} {peak:>9.0f}")  # fmt: skip


if __name__ == "__main__":
    main()
