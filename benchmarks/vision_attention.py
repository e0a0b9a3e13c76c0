"""The Qwen2.5-VL-7B vision tower with stock SDPA (one call per window/image) vs vcritic's grouped attention.

Builds a random-weight tower of the released shape in memory (no download: the 7B vision config of
``throughput.py``'s ``ARCHES``, i.e. hidden 1280, 16 heads, intermediate 3420, 112 px windows, full attention in
every 8th layer, patch 14, merge 2) and, per image size, prints one JSON line on stdout with both side by side:
forward seconds and images/s of the tower, SDPA calls per forward, and the largest absolute difference between
their outputs. Both run in the same process on the same weights and inputs::

    python benchmarks/vision_attention.py                           # CPU: depth 4, batch 4, 448x448, ~1-2 min
    python benchmarks/vision_attention.py --device cuda --batch 8,32 --size 448x448,1024x768   # full depth, bf16

Images are random pixels at the size the released processor resizes each to (448x448: 1024 patches, 256 tokens;
1024x768: 3996 patches, 999 tokens). ``--depth`` below 32 keeps the released pattern where it can (layers 7, 15,
... attend fully) and otherwise makes the last layer the full-attention one, so both kinds are measured.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from throughput import ARCHES, QWEN_PIXELS  # noqa: E402 - the one place that holds the 7B shapes


def build_tower(depth: int, device, dtype):
    """A Qwen2.5-VL model with the 7B vision tower (``depth`` blocks) and a one-layer stub language model, so the
    tower's attention is switched through transformers' sub-config API exactly as vcritic.inference.loading does it."""
    import torch
    from transformers import AutoModel, Qwen2_5_VLConfig

    from vcritic.inference.loading import with_attention

    vision = dict(ARCHES["qwen2.5-vl-7b"]["vision_config"], depth=depth)
    vision["fullatt_block_indexes"] = [i for i in vision["fullatt_block_indexes"] if i < depth] or [depth - 1]
    # The released vocabulary size only so that the config's special token ids are valid; 4.9 M parameters.
    text = dict(
        vocab_size=152064,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        rope_parameters={"rope_type": "default", "mrope_section": [2, 3, 3]},
    )
    config = Qwen2_5_VLConfig(vision_config=vision, text_config=text)
    torch.manual_seed(0)
    with torch.device(device):
        model = with_attention(AutoModel.from_config, config, dtype=dtype)
    return model.eval().requires_grad_(False), config.vision_config


def patches(width: int, height: int, batch: int, vision, device, dtype):
    """Random flattened patches of ``batch`` images of ``width`` x ``height`` as the released processor sizes them."""
    import torch
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

    factor = vision.patch_size * vision.spatial_merge_size
    h, w = smart_resize(height, width, factor=factor, min_pixels=QWEN_PIXELS[0], max_pixels=QWEN_PIXELS[1])
    grid = torch.tensor([[1, h // vision.patch_size, w // vision.patch_size]] * batch, device=device)
    per_patch = vision.in_channels * vision.temporal_patch_size * vision.patch_size**2
    generator = torch.Generator(device="cpu").manual_seed(1)
    pixels = torch.randn(int(grid.prod(dim=1).sum()), per_patch, generator=generator).to(device, dtype)
    return pixels, grid


def measure(model, pixels, grid, repeats: int, device) -> dict:
    """Forward seconds (best of ``repeats`` after a warm-up that also counts the SDPA calls) and the output."""
    import torch

    from vcritic.testing import SDPACounter

    def forward():
        with torch.no_grad():
            return model.visual(pixels, grid_thw=grid).pooler_output

    with SDPACounter() as calls:
        forward()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        output = forward()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    seconds = min(times)
    return {"forward_s": seconds, "img_s": len(grid) / seconds, "attention_calls": calls.calls, "output": output}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--depth", type=int, default=None, help="vision blocks (default 4 on CPU, 32 on CUDA)")
    parser.add_argument("--device", default=None, help="default: cuda if there, else cpu")
    parser.add_argument("--dtype", default=None, help="default: bfloat16 on CUDA, float32 on CPU")
    parser.add_argument("--batch", default="4", help="images per forward, comma-separated (default 4)")
    parser.add_argument("--size", default=None, help="WxH, comma-separated (default 448x448 CPU, +1024x768 CUDA)")
    parser.add_argument("--repeats", type=int, default=None, help="timed forwards, best kept (default 1 CPU, 5 CUDA)")
    args = parser.parse_args()

    import torch

    from vcritic.model.runtime import resolve_device, resolve_dtype
    from vcritic.model.vision_attention import NAME, use_for_vision

    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype, device)
    depth = args.depth or (32 if device.type == "cuda" else 4)
    repeats = args.repeats or (5 if device.type == "cuda" else 1)
    model, vision = build_tower(depth, device, dtype)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(json.dumps({"figure": "setup", "device": name, "dtype": str(dtype).removeprefix("torch."), "depth": depth,
                      "full_attention_layers": vision.fullatt_block_indexes, "repeats": repeats,
                      "torch_threads": torch.get_num_threads()}), flush=True)  # fmt: skip
    sizes = args.size or ("448x448,1024x768" if device.type == "cuda" else "448x448")
    for size in sizes.split(","):
        width, height = (int(x) for x in size.lower().split("x"))
        for batch in (int(b) for b in args.batch.split(",")):
            pixels, grid = patches(width, height, batch, vision, device, dtype)
            results = {}
            for label, implementation in (("stock_sdpa", "sdpa"), ("grouped", NAME)):
                use_for_vision(model, implementation)
                results[label] = measure(model, pixels, grid, repeats, device)
            stock, grouped = results["stock_sdpa"].pop("output"), results["grouped"].pop("output")
            count = int(grid[0].prod())
            record = {"figure": "vision_tower", "size": size, "batch": batch, "patches_per_image": count,
                      "tokens_per_image": count // vision.spatial_merge_size**2,
                      **results, "speedup": results["stock_sdpa"]["forward_s"] / results["grouped"]["forward_s"],
                      "max_abs_diff": float((stock.float() - grouped.float()).abs().max())}  # fmt: skip
            print(json.dumps(record), flush=True)
            del pixels, grid, stock, grouped
            if device.type == "cuda":
                torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
