"""The "runs on a laptop" claim, measured: `vcritic score` on a CPU with 2 threads, images/s and peak RSS.

Random-weight models in the real configurations (from the public config.json of each checkpoint, built here from
the config: no download), each scored through the real CLI in its own process (``python -m vcritic score``,
``--device cpu``, float32, ``--workers 0``), on 448x448 images:

- ``smolvlm-256m``: HuggingFaceTB/SmolVLM-256M-Instruct (Idefics3 layout: SigLIP 12x768 + SmolLM2-135M 30x576).
  Its processor sees one 512 px tile per image here (no image splitting): 64 visual tokens.
- ``q-realign-mini``: Q-ReAlign Mini = Qwen3.5-0.8B (24 text layers of 1024, 18 Gated-DeltaNet linear-attention and
  6 full-attention, vocab 248320; vision 12x768, patch 16): 196 visual tokens at 448 px. Read out as its card does.
- ``qwen2.5-vl-7b``: its fp32 weights alone are 33 GB, more than a 24 GB machine holds, so it is not run whole. Three
  depth slices at full width (text x vision layers: 2x4, 4x4, 2x8) are measured and the time and RSS extrapolated
  linearly to 28 text and 32 vision layers; the figure is labelled as an estimate.

The reasoning judge's cost (``--reasoning``): the tiny Qwen2.5-VL of vcritic.testing scored with vcritic's level-word
read-out and with VisualQuality-R1's (generate up to 256 tokens, parse a number); the ratio of the two rates.

    nice -n 10 python benchmarks/cpu_judges.py --images 3                 # everything, real sizes
    python benchmarks/cpu_judges.py --scale tiny                          # the same code in seconds (a test)
    python benchmarks/cpu_judges.py --models q-realign-mini --images 2

Qwen3.5 needs transformers >= 5.2; a family vcritic cannot run yet is reported as such, not hidden.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

IMAGE_SIDE = 448
MODELS = ("smolvlm-256m", "q-realign-mini", "qwen2.5-vl-7b")

# Public config.json sizes. "tiny" keeps each layout (layer pattern, towers) at toy widths, for a test run.
QWEN3_5_0_8B = dict(
    text=dict(vocab_size=248320, hidden_size=1024, intermediate_size=3584, num_hidden_layers=24,
              num_attention_heads=8, num_key_value_heads=2, head_dim=256, linear_num_key_heads=16,
              linear_num_value_heads=16, linear_key_head_dim=128, linear_value_head_dim=128,
              linear_conv_kernel_dim=4, full_attention_interval=4, tie_word_embeddings=True,
              rope_parameters={"rope_type": "default", "rope_theta": 10000000.0, "partial_rotary_factor": 0.25,
                               "mrope_section": [11, 11, 10], "mrope_interleaved": True}),
    vision=dict(depth=12, hidden_size=768, intermediate_size=3072, num_heads=12, patch_size=16, spatial_merge_size=2,
                temporal_patch_size=2, out_hidden_size=1024, num_position_embeddings=2304),
)  # fmt: skip
QWEN3_5_TINY = dict(
    text=dict(vocab_size=1024, hidden_size=64, intermediate_size=128, num_hidden_layers=4, num_attention_heads=2,
              num_key_value_heads=1, head_dim=32, linear_num_key_heads=2, linear_num_value_heads=2,
              linear_key_head_dim=16, linear_value_head_dim=16, linear_conv_kernel_dim=4, full_attention_interval=4,
              tie_word_embeddings=True,
              rope_parameters={"rope_type": "default", "rope_theta": 10000000.0, "partial_rotary_factor": 0.25,
                               "mrope_section": [1, 1, 2], "mrope_interleaved": True}),
    vision=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, patch_size=16, spatial_merge_size=2,
                temporal_patch_size=2, out_hidden_size=64, num_position_embeddings=2304),
)  # fmt: skip
SMOLVLM_256M = dict(
    vision=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12, patch_size=16,
                image_size=512),
    text=dict(model_type="llama", vocab_size=49280, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
              num_attention_heads=9, num_key_value_heads=3, rope_theta=100000.0, max_position_embeddings=8192,
              tie_word_embeddings=True),
    scale_factor=4,
)  # fmt: skip
SMOLVLM_TINY = dict(
    vision=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, patch_size=16,
                image_size=512),
    text=dict(model_type="llama", vocab_size=1024, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
              num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=8192, tie_word_embeddings=True),
    scale_factor=4,
)  # fmt: skip
QWEN2_5_VL_7B = dict(
    text=dict(vocab_size=152064, hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
              num_attention_heads=28, num_key_value_heads=4, tie_word_embeddings=False, max_position_embeddings=128000,
              rope_parameters={"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [16, 24, 24]}),
    vision=dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, out_hidden_size=3584,
                patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=112),
)  # fmt: skip
QWEN2_5_VL_TINY = dict(
    text=dict(vocab_size=1024, hidden_size=64, intermediate_size=128, num_hidden_layers=28, num_attention_heads=2,
              num_key_value_heads=1, tie_word_embeddings=False, max_position_embeddings=4096,
              rope_parameters={"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [4, 6, 6]}),
    vision=dict(depth=32, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64, patch_size=14,
                spatial_merge_size=2, temporal_patch_size=2, window_size=112),
)  # fmt: skip
SLICES = ((2, 4), (4, 4), (2, 8))  # (text layers, vision layers) measured for the 7B


def _tokenizer(extra=()):
    from vcritic.testing import train_tokenizer

    tokenizer = train_tokenizer()
    if extra:
        tokenizer.add_tokens(list(extra), special_tokens=True)
    return tokenizer


def _save(model, processor, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory, safe_serialization=True)
    processor.save_pretrained(directory)
    return directory


def build_qwen3_5(directory: Path, sizes: dict) -> Path:
    import torch
    import transformers as tf

    from vcritic.testing import QWEN_TEMPLATE

    torch.manual_seed(0)
    tokenizer = _tokenizer()
    ids = tokenizer.convert_tokens_to_ids
    text = {**sizes["text"], "pad_token_id": tokenizer.pad_token_id, "eos_token_id": tokenizer.eos_token_id}
    config = tf.Qwen3_5Config(
        text_config=text,
        vision_config=sizes["vision"],
        image_token_id=ids("<|image_pad|>"),
        video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"),
        vision_end_token_id=ids("<|vision_end|>"),
        tie_word_embeddings=True,
    )
    with torch.no_grad():
        model = tf.Qwen3_5ForConditionalGeneration(config)
    pixels = dict(min_pixels=32 * 32, max_pixels=IMAGE_SIDE * IMAGE_SIDE)
    processor = tf.Qwen3VLProcessor(
        image_processor=tf.Qwen2VLImageProcessor(patch_size=16, merge_size=2, **pixels),
        tokenizer=tokenizer,
        video_processor=tf.Qwen3VLVideoProcessor(patch_size=16, merge_size=2),
        chat_template=QWEN_TEMPLATE,
    )
    return _save(model, processor, directory)


SMOLVLM_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] | capitalize }}:"
    "{% for item in message['content'] %}{% if item['type'] == 'image' %}<image>{% elif item['type'] == 'text' %}"
    "{{ item['text'] }}{% endif %}{% endfor %}<end_of_utterance>\n{% endfor %}"
    "{% if add_generation_prompt %}Assistant:{% endif %}"
)


def build_smolvlm(directory: Path, sizes: dict) -> Path:
    import torch
    import transformers as tf

    torch.manual_seed(0)
    tokenizer = _tokenizer(("<fake_token_around_image>", "<global-img>", "<end_of_utterance>"))
    text = {**sizes["text"], "pad_token_id": tokenizer.pad_token_id}
    config = tf.SmolVLMConfig(
        vision_config=sizes["vision"],
        text_config=text,
        scale_factor=sizes["scale_factor"],
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
    )
    with torch.no_grad():
        model = tf.SmolVLMForConditionalGeneration(config)
    side = sizes["vision"]["image_size"]
    seq_len = (side // sizes["vision"]["patch_size"]) ** 2 // sizes["scale_factor"] ** 2
    image_processor = tf.SmolVLMImageProcessor(
        do_image_splitting=False, size={"longest_edge": side}, max_image_size={"longest_edge": side}
    )
    processor = tf.SmolVLMProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=tf.SmolVLMVideoProcessor(),
        image_seq_len=seq_len,
        chat_template=SMOLVLM_TEMPLATE,
    )
    return _save(model, processor, directory)


def build_qwen2_5_vl(directory: Path, sizes: dict, text_layers: int, vision_layers: int) -> Path:
    import torch
    import transformers as tf

    from vcritic.testing import QWEN_TEMPLATE

    torch.manual_seed(0)
    tokenizer = _tokenizer()
    ids = tokenizer.convert_tokens_to_ids
    text = {**sizes["text"], "num_hidden_layers": text_layers, "pad_token_id": tokenizer.pad_token_id}
    vision = {**sizes["vision"], "depth": vision_layers, "fullatt_block_indexes": [vision_layers - 1]}
    config = tf.Qwen2_5_VLConfig(
        text_config=text,
        vision_config=vision,
        image_token_id=ids("<|image_pad|>"),
        video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"),
        vision_end_token_id=ids("<|vision_end|>"),
    )
    with torch.no_grad():
        model = tf.Qwen2_5_VLForConditionalGeneration(config)
    pixels = dict(min_pixels=28 * 28, max_pixels=IMAGE_SIDE * IMAGE_SIDE)
    processor = tf.Qwen2_5_VLProcessor(
        image_processor=tf.Qwen2VLImageProcessor(**pixels),
        tokenizer=tokenizer,
        video_processor=tf.Qwen2VLVideoProcessor(**pixels),
        chat_template=QWEN_TEMPLATE,
    )
    return _save(model, processor, directory)


def make_images(folder: Path, count: int) -> Path:
    from PIL import Image
    from skimage import data

    folder.mkdir(parents=True, exist_ok=True)
    sources = [data.astronaut(), data.chelsea(), data.coffee(), data.rocket()]
    for i in range(count):
        Image.fromarray(sources[i % len(sources)]).convert("RGB").resize((IMAGE_SIDE, IMAGE_SIDE)).save(
            folder / f"img{i:03d}.png"
        )
    return folder


# Runs the CLI in this process and reports its peak RSS (every byte the command needed, loading included) and the
# CPU seconds of the scoring loop alone (all threads): on a shared machine wall time measures the neighbours too,
# CPU time does not, so CPU seconds / threads is the rate an otherwise idle machine of this kind would reach.
_RUNNER = (
    "import resource, sys, time\n"
    "import vcritic.pipeline.scoring as scoring\n"
    "plain = scoring.score_paths\n"
    "def timed(*args, **kwargs):\n"
    "    start = time.process_time()\n"
    "    yield from plain(*args, **kwargs)\n"
    "    print(f'SCORE_CPU_S {time.process_time() - start}', file=sys.stderr)\n"
    "scoring.score_paths = timed\n"
    "from vcritic.cli.app import main\n"
    "code = main(sys.argv[1:])\n"
    "print(f'MAXRSS_KB {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}', file=sys.stderr)\n"
    "sys.exit(code)\n"
)


def score_cli(model: Path, images: Path, threads: int, readout: str | None = None) -> dict:
    """``vcritic score`` in a fresh process with ``threads`` CPU threads: img/s (scoring only, from its summary
    line), load seconds and peak RSS (GB)."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "VCRITIC_NO_PROGRESS": "1"}
    count = len(list(images.iterdir()))
    args = ["score", str(images), "-m", str(model), "--device", "cpu", "--workers", "0", "-b", str(count)]
    args += ["--readout", readout] if readout else []
    done = subprocess.run([sys.executable, "-c", _RUNNER, *args], capture_output=True, text=True, env=env)
    err = done.stderr
    rate = re.search(r"\(([\d.]+) img/s", err)
    loaded = re.search(r"loaded in ([\d.]+) s", err)
    rss = re.search(r"MAXRSS_KB (\d+)", err)
    # A row with an error (a reasoning judge's answer without a number) exits 1 or 3; its timing still stands.
    if rate is None:
        last = [line for line in err.splitlines() if line.strip()][-3:]
        return {"error": " | ".join(last) or f"exit {done.returncode}"}
    seconds = float(re.search(r"in ([\d.]+) s \(", err).group(1))  # the summary's rate has one decimal only
    cpu = re.search(r"SCORE_CPU_S ([\d.]+)", err)
    idle = float(cpu.group(1)) / threads / count if cpu else None  # s/img on an idle machine with `threads` cores
    return {
        "img_s": count / seconds,
        "s_per_img": seconds / count,
        "idle_s_per_img": idle,
        "idle_img_s": 1.0 / idle if idle else None,
        "load_s": float(loaded.group(1)) if loaded else None,
        "rss_gb": int(rss.group(1)) / 1024**2 if rss else None,
    }


def params_of(directory: Path) -> float:
    from safetensors import safe_open

    total = 0
    for path in directory.glob("*.safetensors"):
        with safe_open(path, "pt") as handle:
            for key in handle.keys():  # noqa: SIM118 (safe_open has no __iter__)
                total += _numel(handle.get_slice(key).get_shape())
    return total / 1e9


def _numel(shape) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def measure(name: str, scale: str, work: Path, images: Path, threads: int) -> dict:
    tiny = scale == "tiny"
    folder = work / name
    if name == "smolvlm-256m":
        build_smolvlm(folder, SMOLVLM_TINY if tiny else SMOLVLM_256M)
        result = score_cli(folder, images, threads)
    elif name == "q-realign-mini":
        try:
            build_qwen3_5(folder, QWEN3_5_TINY if tiny else QWEN3_5_0_8B)
        except (AttributeError, ImportError) as err:
            return {"name": name, "error": f"transformers cannot build qwen3_5 here: {err}"}
        result = score_cli(folder, images, threads, readout="q-realign")
    else:
        return measure_7b(work, images, threads, tiny)
    result.update(name=name, params_b=params_of(folder))
    shutil.rmtree(folder, ignore_errors=True)
    return result


def measure_7b(work: Path, images: Path, threads: int, tiny: bool) -> dict:
    """Three depth slices at full width, extrapolated linearly to the full depth (28 text, 32 vision layers)."""
    sizes = QWEN2_5_VL_TINY if tiny else QWEN2_5_VL_7B
    points = {}
    for text_layers, vision_layers in SLICES:
        folder = work / f"qwen2.5-vl-7b-{text_layers}x{vision_layers}"
        build_qwen2_5_vl(folder, sizes, text_layers, vision_layers)
        got = score_cli(folder, images, threads)
        got["params_b"] = params_of(folder)
        shutil.rmtree(folder, ignore_errors=True)
        if "error" in got:
            return {"name": "qwen2.5-vl-7b", **got}
        points[(text_layers, vision_layers)] = got
        print(f"  slice {text_layers} text x {vision_layers} vision layers: {got}", file=sys.stderr)
    (t0, v0), (t1, _), (_, v2) = SLICES
    out = {"name": "qwen2.5-vl-7b (estimate)", "params_b": 8.29}
    key = "idle_s_per_img"  # contended wall times do not extrapolate
    base = points[SLICES[0]][key]
    per_text = (points[SLICES[1]][key] - base) / (t1 - t0)
    per_vision = (points[SLICES[2]][key] - base) / (v2 - v0)
    out[key] = base + per_text * (28 - t0) + per_vision * (32 - v0)
    # Peak RSS is set by loading, not by depth: the full model's fp32 weights plus the smallest slice's overhead.
    smallest = points[SLICES[0]]
    full_params = 8.29 if not tiny else smallest["params_b"]
    out["rss_gb"] = full_params * 4e9 / 1024**3 + smallest["rss_gb"] - smallest["params_b"] * 4e9 / 1024**3
    out["img_s"] = None
    out["idle_img_s"] = 1.0 / out["idle_s_per_img"] if out["idle_s_per_img"] else None
    out["note"] = "does not fit a 24 GB machine in fp32 (33 GB of weights); extrapolated from depth slices"
    return out


def reasoning_ratio(work: Path, images: Path, threads: int) -> dict:
    """The same tiny model read out (one forward) and asked to reason (generate up to 256 tokens, parse a number)."""
    from vcritic.testing import build_tiny

    folder = build_tiny("qwen2_5_vl", work / "tiny-qwen2.5-vl")
    read = score_cli(folder, images, threads)
    reasoned = score_cli(folder, images, threads, readout="visualquality-r1")
    shutil.rmtree(folder, ignore_errors=True)
    # A random model writes no number: the rows carry an error and the command exits 1, but its timing stands.
    return {"read_img_s": read.get("idle_img_s"), "reasoning_img_s": reasoned.get("idle_img_s"), "read": read,
            "reasoning": reasoned}  # fmt: skip


def _row(result: dict) -> str:
    if "error" in result:
        return f"{result['name']:<28} not measured: {result['error']}"
    wall = f"{result['img_s']:.3f} img/s" if result.get("img_s") else "n/a"
    return (
        f"{result['name']:<28} {result.get('params_b', 0):>6.2f}B {result['idle_img_s']:>8.3f} img/s "
        f"{result['idle_s_per_img']:>7.2f} s/img {result['rss_gb']:>7.2f} GB RSS   (wall: {wall})"
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated from {', '.join(MODELS)}")
    parser.add_argument("--scale", choices=("real", "tiny"), default="real")
    parser.add_argument("--images", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reasoning", action=argparse.BooleanOptionalAction, default=True)
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="vcritic-cpu-judges-"))
    try:
        images = make_images(work / "images", args.images)
        print(f"vcritic score on CPU, {args.threads} threads, float32, {args.images} images of "
              f"{IMAGE_SIDE}x{IMAGE_SIDE} px, {args.scale} sizes, random weights")  # fmt: skip
        print("rate and time: scoring CPU seconds / threads (an idle machine's rate); wall: as measured here, with "
              f"the machine's other load (load average {os.getloadavg()[0]:.1f} at the start)")  # fmt: skip
        print(f"{'model':<28} {'params':>7} {'rate':>14} {'time':>13} {'peak':>14}")
        for name in [m.strip() for m in args.models.split(",") if m.strip()]:
            result = measure(name, args.scale, work, images, args.threads)
            print(_row(result), flush=True)
            if result.get("note"):
                print(f"  ({result['note']})")
        if args.reasoning:
            ratio = reasoning_ratio(work, images, args.threads)
            if ratio["read_img_s"] and ratio["reasoning_img_s"]:
                print(f"reasoning read-out (VisualQuality-R1's, 256-token budget) on the tiny Qwen2.5-VL: "
                      f"{ratio['reasoning_img_s']:.3f} img/s vs {ratio['read_img_s']:.3f} img/s read out: "
                      f"{ratio['read_img_s'] / ratio['reasoning_img_s']:.0f}x slower in CPU time "
                      "(a random model writes the whole budget; a real answer is shorter)")  # fmt: skip
            else:
                print(f"reasoning ratio not measured: {ratio}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
