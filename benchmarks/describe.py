"""``describe``: the written assessment and the read-outs from one image encoding, against the two it took before.

On the same images and the same ~50M-parameter random LLaVA as ``readouts.py`` (built here from a config), times
two ways of getting the text and the numbers of ``vcritic describe``, image by image as the command runs:

1. two passes (describe before this change): ``critic.generate`` over the full DESCRIBE prompt, then
   ``critic.score`` for the read-outs, so the vision tower and the prompt prefix run twice per image;
2. one pass (``critic.describe`` now): the image and the shared prompt prefix once, the read-out suffixes from its
   KV cache, and ``generate`` continuing from a copy of that cache for the text (``vcritic.inference.shared_prefix``).

The saving is one image + prefix encoding per image, a fixed cost, so the ratio shrinks as the text grows: each
``--max-new-tokens`` value is timed. It also checks that both ways write the same text and the same numbers.

    python benchmarks/describe.py --threads 1                      # CPU-sized random LLaVA, 8 images
    python benchmarks/describe.py --device cuda --images 64 --model /ckpt --max-new-tokens 160
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from readouts import add_model_options, load_benchmark_critic
from throughput import make_images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_options(parser)
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--tasks", default="all", help="read-outs beside the text, as describe --tasks")
    parser.add_argument("--max-new-tokens", default="16,64,160", help="comma-separated text lengths to time")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (1 is steadier when shared)")
    args = parser.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)

    from vcritic.base.images import load_image

    lengths = [int(n) for n in args.max_new_tokens.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        critic, name = load_benchmark_critic(args, tmp_path)
        images = [load_image(path) for path in make_images(tmp_path, args.images)]
        n_params = sum(p.numel() for p in critic.model.parameters())
        print(f"model: {name}, {n_params / 1e6:.1f} M parameters")
        print(f"device: {critic.device}, dtype: {str(critic.dtype).removeprefix('torch.')}, images: {len(images)}, "
              f"tasks: {args.tasks}, torch threads {torch.get_num_threads()}, "
              f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")  # fmt: skip

        def two_passes(image, tokens):
            return critic.generate(image, max_new_tokens=tokens), critic.score(image, tasks=args.tasks)

        def one_pass(image, tokens):
            described = critic.describe(image, tasks=args.tasks, max_new_tokens=tokens)
            return described.text, described.score

        def timed(fn, image, tokens):
            start = time.perf_counter()
            result = fn(image, tokens)
            if critic.device.type == "cuda":
                torch.cuda.synchronize()
            return time.perf_counter() - start, result

        two_passes(images[0], 2), one_pass(images[0], 2)  # warm-up: first-call allocations, kernel choice
        print(f"{'max new tokens':>14} {'two passes img/s':>17} {'one pass img/s':>15} {'speed-up':>9} "
              f"{'same text':>10} {'largest number difference':>26}")  # fmt: skip
        for tokens in lengths:
            before = after = drift = 0.0
            same = 0
            # Alternating image by image, so a shared machine's changing load falls on both ways alike.
            for image in images:
                seconds, (old_text, old_score) = timed(two_passes, image, tokens)
                before += seconds
                seconds, (new_text, new_score) = timed(one_pass, image, tokens)
                after += seconds
                same += old_text == new_text
                drift = max(drift, _largest_difference(old_score, new_score))
            print(f"{tokens:>14} {len(images) / before:>17.2f} {len(images) / after:>15.2f} "
                  f"{before / after:>8.2f}x {same:>4}/{len(images):<5} {drift:>26.2e}")  # fmt: skip
        print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


def _largest_difference(a, b) -> float:
    """Largest difference between two Scores' numbers (0-100 scale; P(AI-generated) x 100)."""
    pairs = [(a.mos, b.mos), (a.mos_std, b.mos_std)]
    pairs += [(a.attributes[k], b.attributes[k]) for k in a.attributes]
    if a.p_ai_generated is not None:
        pairs.append((100 * a.p_ai_generated, 100 * b.p_ai_generated))
    return max((abs(x - y) for x, y in pairs if x is not None), default=0.0)


if __name__ == "__main__":
    main()
