"""Training throughput of `vcritic train` (the real loop, not a hand-written one): samples/s and peak GPU memory.

Builds a random model (no download), writes relativity dialogues over scikit-image pictures, and runs a few
optimizer steps of `vcritic.training.run.train` for each micro-batch size, with gradient checkpointing on or off.
Figures come from the run's own metrics.jsonl (the first logged window, which includes warm-up, is skipped).

    python benchmarks/train_throughput.py                                  # small random LLaVA, CPU-sized
    python benchmarks/train_throughput.py --model qwen2.5-vl-7b-random --batch-sizes 1 4 8 16 --steps 12
        # the issue's set-up: random Qwen2.5-VL-7B in bf16, 448 px, LoRA r16 + merger (needs a GPU, ~17 GB disk)
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


def build_qwen_7b(directory: Path) -> Path:
    """A random Qwen2.5-VL-7B (the real configuration) with vcritic's small tokenizer, saved as a checkpoint."""
    import torch
    from transformers import (
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2_5_VLProcessor,
        Qwen2VLImageProcessor,
        Qwen2VLVideoProcessor,
    )

    from vcritic.testing import QWEN_TEMPLATE, train_tokenizer

    tokenizer = train_tokenizer()
    ids = tokenizer.convert_tokens_to_ids
    config = Qwen2_5_VLConfig(
        text_config=dict(
            vocab_size=152064, hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
            num_attention_heads=28, num_key_value_heads=4, max_position_embeddings=32768,
            rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": [16, 24, 24]},
            pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id, tie_word_embeddings=False,
        ),
        vision_config=dict(
            depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, out_hidden_size=3584,
            patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=112,
            fullatt_block_indexes=[7, 15, 23, 31],
        ),
        image_token_id=ids("<|image_pad|>"), video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"), vision_end_token_id=ids("<|vision_end|>"),
    )  # fmt: skip
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with torch.device(device):
        model = Qwen2_5_VLForConditionalGeneration._from_config(config, dtype=torch.bfloat16)
    pixels = 448 * 448
    processor = Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(min_pixels=pixels, max_pixels=pixels),
        tokenizer=tokenizer,
        video_processor=Qwen2VLVideoProcessor(min_pixels=pixels, max_pixels=pixels),
        chat_template=QWEN_TEMPLATE,
    )
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory, safe_serialization=True)
    processor.save_pretrained(directory)
    del model
    return directory


def write_data(folder: Path, count: int, size: int) -> Path:
    from PIL import Image, ImageFilter
    from skimage import data

    from vcritic.data.dialogues import Dialogue, write_dialogues
    from vcritic.readout.prompts import COMPARE

    folder.mkdir(parents=True, exist_ok=True)
    sources = [data.astronaut(), data.chelsea(), data.coffee(), data.rocket()]
    dialogues = []
    for i in range(count):
        good = Image.fromarray(sources[i % len(sources)]).convert("RGB").resize((size, size))
        good.save(folder / f"{i}a.jpg")
        good.filter(ImageFilter.GaussianBlur(2 + i % 3)).save(folder / f"{i}b.jpg")
        word = (" first", " second")[i % 2]
        images = (f"{i}a.jpg", f"{i}b.jpg") if i % 2 == 0 else (f"{i}b.jpg", f"{i}a.jpg")
        dialogues.append(Dialogue("compare", "relativity", images, COMPARE.instruction, COMPARE.answer(word)))
    write_dialogues(folder / "dialogues.jsonl", dialogues)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="llava-small", help="llava-small, qwen2.5-vl-7b-random or a checkpoint")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--checkpointing", choices=["on", "off", "both"], default="both")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--device", default=None)
    parser.add_argument("--json", type=Path, help="also append each result as a JSON line to this file")
    args = parser.parse_args()

    import torch

    from vcritic.testing import build_llava
    from vcritic.training.config import load_config
    from vcritic.training.run import train

    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        if args.model == "llava-small":
            model, size = build_llava(tmp_path / "model", hidden=256, layers=4, image_size=224), 224
        elif args.model == "qwen2.5-vl-7b-random":
            model, size = build_qwen_7b(tmp_path / "model"), 448
        else:
            model, size = Path(args.model), 448
        data = write_data(tmp_path / "data", 64, size)
        modes = {"on": [True], "off": [False], "both": [True, False]}[args.checkpointing]
        print(f"model: {args.model}, steps: {args.steps}, torch threads: {torch.get_num_threads()}")
        for checkpointing in modes:
            for batch in args.batch_sizes:
                overrides = dict(
                    steps=args.steps, batch_size=batch, grad_accum=1, save_every=0, log_every=1,
                    gradient_checkpointing=checkpointing, warmup_steps=0,
                )  # fmt: skip
                config = load_config(1, "paper", overrides)
                if torch.cuda.is_available():
                    torch.cuda.reset_peak_memory_stats()
                out = tmp_path / f"run-{batch}-{checkpointing}"
                started = time.monotonic()
                try:
                    train(model=str(model), data=data, output=out, stage=1, config=config, device=args.device)
                except torch.OutOfMemoryError:
                    print(f"micro-batch {batch:3d}  checkpointing {checkpointing!s:5}  out of memory")
                    torch.cuda.empty_cache()
                    continue
                wall = time.monotonic() - started
                lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
                # Seconds since the loop started, at each logged step; the rate excludes the first step (warm-up).
                elapsed = [r["step"] * batch / r["samples_per_s"] for r in lines]
                rate = (lines[-1]["step"] - lines[0]["step"]) * batch / max(elapsed[-1] - elapsed[0], 1e-9)
                memory = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else float("nan")
                result = {"model": args.model, "batch": batch, "checkpointing": checkpointing,
                          "samples_per_s": round(rate, 3), "peak_gib": round(memory, 2),
                          "wall_s": round(wall, 1)}  # fmt: skip
                print(
                    f"micro-batch {batch:3d}  checkpointing {checkpointing!s:5}  {rate:7.2f} samples/s  "
                    f"peak {memory:6.1f} GiB  (run {wall:.0f} s incl. loading)"
                )
                if args.json:
                    with args.json.open("a") as handle:
                        handle.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
