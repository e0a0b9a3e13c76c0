"""Cold start by phase: a fresh process from ``python`` to the first comparison, with the weights in the page cache.

Builds a random Qwen2.5-VL checkpoint (bfloat16 safetensors, the released processor settings) once under
``--folder``, then, for each loading variant, runs a fresh interpreter that times: imports (torch, transformers,
vcritic), the processor load, the weights load (``from_pretrained`` with vcritic's ``device_map``), and the first
forward (``Critic.compare`` on two 448 px JPEGs); and, apart, the whole ``python -m vcritic compare a b`` command
(the issue-17 target: <= 8 s for a 7B on a GPU). Figures go to stdout and, as JSON lines, to ``--out`` (default
``$OUT/cold_start.jsonl``).

Loading variants (transformers 5.x reads safetensors by mmap and copies tensor by tensor on a pool of
``transformers.core_model_loading.GLOBAL_WORKERS`` threads, 4 by default): ``default``; ``threads=N`` (that pool
at N threads); ``no-mmap`` (``from_pretrained(disable_mmap=True)``: each file read whole, then copied). See
docs/explanations/cold-start.md.

::

    python benchmarks/cold_start.py --size tiny                       # CPU, seconds
    python benchmarks/cold_start.py --size 1b --device cpu            # a 1.3 B model, 2.7 GB of bf16 weights
    python benchmarks/cold_start.py --size 7b --device cuda --variants default threads=8 threads=16 no-mmap
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

# Language model / vision tower dimensions; "7b" is Qwen2.5-VL-7B's (benchmarks/throughput.py ARCHES).
SIZES = {
    "tiny": None,  # vcritic.testing's tiny model as built
    "1b": dict(text_config=dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=16, num_attention_heads=12,
                                num_key_value_heads=2, vocab_size=32000),
               vision_config=dict(depth=16, hidden_size=1280, intermediate_size=3420, num_heads=16,
                                  out_hidden_size=1536, window_size=112, fullatt_block_indexes=[7, 15])),
    "7b": "qwen2.5-vl-7b",
}  # fmt: skip

# Runs in the fresh interpreter: argv = model, image a, image b, device, variant; prints one JSON line.
CHILD = r"""
import json, sys, time
started = time.perf_counter()
model, image_a, image_b, device, variant = sys.argv[1:6]
import torch, transformers
import vcritic.inference.loading as loading
from vcritic.cli import app  # what `vcritic compare` imports before it loads anything
phases = {"imports_s": time.perf_counter() - started}
if variant.startswith("threads="):
    import transformers.core_model_loading as core  # compat: a module constant in transformers 5.x
    core.GLOBAL_WORKERS = int(variant.split("=")[1])
if variant == "no-mmap":
    auto = transformers.AutoModelForImageTextToText
    stock = auto.from_pretrained.__func__
    auto.from_pretrained = classmethod(lambda cls, *a, **k: stock(cls, *a, disable_mmap=True, **k))
for name, key in (("_load_processor", "processor_s"), ("_load_model", "weights_s")):
    original = getattr(loading, name)
    def timed(*a, _original=original, _key=key, **k):
        start = time.perf_counter()
        try:
            return _original(*a, **k)
        finally:
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            phases[_key] = time.perf_counter() - start
    setattr(loading, name, timed)
start = time.perf_counter()
critic = loading.load_critic(model, device=device)
phases["load_critic_s"] = time.perf_counter() - start
start = time.perf_counter()
critic.compare(image_a, image_b)
if device.startswith("cuda"):
    torch.cuda.synchronize()
phases["first_compare_s"] = time.perf_counter() - start
phases["total_s"] = time.perf_counter() - started
phases["torch"], phases["transformers"] = torch.__version__, transformers.__version__
print(json.dumps(phases))
"""


def build(size: str, folder: Path, device: str = "cpu") -> Path:
    """The random checkpoint for ``size`` in bfloat16 under ``folder`` (built once, reused)."""
    target = folder / f"qwen2_5_vl-{size}"
    if (target / "config.json").exists():
        return target
    import torch
    from throughput import ARCHES, QWEN_PIXELS, _grown
    from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor
    from transformers.image_utils import SizeDict

    from vcritic.testing import build_tiny

    tiny = build_tiny("qwen2_5_vl", folder / "tiny")
    if SIZES[size] is None:
        return tiny
    spec = ARCHES[SIZES[size]] if isinstance(SIZES[size], str) else SIZES[size]
    config = AutoConfig.from_pretrained(tiny)
    for key in ("text_config", "vision_config"):
        setattr(config, key, _grown(getattr(config, key), spec[key]))
    processor = AutoProcessor.from_pretrained(tiny)
    processor.image_processor.size = SizeDict(shortest_edge=QWEN_PIXELS[0], longest_edge=QWEN_PIXELS[1])
    with torch.device(device):  # random init on the GPU where there is one: seconds instead of minutes
        model = AutoModelForImageTextToText.from_config(config, dtype=torch.bfloat16)
    model.save_pretrained(target)
    processor.save_pretrained(target)
    del model
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    return target


def warm_page_cache(directory: Path) -> int:
    """Reads every file once, as a second run finds them; the byte count."""
    total = 0
    for path in directory.iterdir():
        if path.is_file():
            with open(path, "rb") as handle:
                while chunk := handle.read(1 << 24):
                    total += len(chunk)
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=sorted(SIZES), default="tiny")
    parser.add_argument("--model", help="a saved checkpoint to load instead of building a random one")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--variants", nargs="+", default=["default"], help="default, threads=N, no-mmap")
    parser.add_argument("--cli", action=argparse.BooleanOptionalAction, default=True,
                        help="also time the whole `python -m vcritic compare a b` command")  # fmt: skip
    parser.add_argument("--folder", help="keep the checkpoint here (reused when present)")
    parser.add_argument("--out", help="JSON-lines file (default $OUT/cold_start.jsonl)")
    args = parser.parse_args()
    out = args.out or (os.path.join(os.environ["OUT"], "cold_start.jsonl") if os.environ.get("OUT") else None)

    from throughput import _jpegs

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.folder or tmp)
        folder.mkdir(parents=True, exist_ok=True)
        model = Path(args.model) if args.model else build(args.size, folder, args.device)
        image_a, image_b = map(str, _jpegs(folder / "images", 2, 448, 448))
        size_gb = warm_page_cache(model) / 1e9
        print(f"model: {model} ({size_gb:.2f} GB of files, in the page cache), device {args.device}", flush=True)
        records = []
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path.cwd()), os.environ.get("PYTHONPATH", "")])}
        for variant in args.variants:
            done = subprocess.run([sys.executable, "-c", CHILD, str(model), image_a, image_b, args.device, variant],
                                  capture_output=True, text=True, env=env)  # fmt: skip
            if done.returncode:
                print(f"{variant}: failed: {done.stderr.strip().splitlines()[-1:]}", flush=True)
                records.append({"figure": "cold_start", "variant": variant, "error": done.stderr[-2000:]})
                continue
            phases = json.loads(done.stdout.strip().splitlines()[-1])
            rate = size_gb / phases["weights_s"] if phases.get("weights_s") else None
            print(f"{variant:>12}: imports {phases['imports_s']:.2f} s, "
                  f"processor {phases.get('processor_s', 0):.2f} s, "
                  f"weights {phases.get('weights_s', 0):.2f} s ({rate or 0:.2f} GB/s), load_critic "
                  f"{phases['load_critic_s']:.2f} s, first compare {phases['first_compare_s']:.2f} s, "
                  f"total {phases['total_s']:.2f} s", flush=True)  # fmt: skip
            records.append({"figure": "cold_start", "variant": variant, "size": args.size, "gb": size_gb,
                            "device": args.device, "weights_gb_s": rate, **phases})  # fmt: skip
        if args.cli:
            start = time.perf_counter()
            done = subprocess.run([sys.executable, "-m", "vcritic", "compare", image_a, image_b, "--model", str(model),
                                   "--device", args.device], capture_output=True, text=True, env=env)  # fmt: skip
            seconds = time.perf_counter() - start
            print(f"`python -m vcritic compare a b`: {seconds:.2f} s, exit {done.returncode}", flush=True)
            records.append({"figure": "cold_compare_cli", "size": args.size, "device": args.device, "s": seconds,
                            "exit": done.returncode})  # fmt: skip
        if out:
            with open(out, "a", encoding="utf-8") as sink:
                for record in records:
                    sink.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
