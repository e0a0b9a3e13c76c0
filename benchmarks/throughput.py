"""Scoring throughput and batch invariance, measured side by side in one run.

Two modes. ``--arch`` builds a full-size random model of a released architecture in memory (no download; see
:data:`ARCHES`) and measures, in one run: forward-only and end-to-end images/s per batch size and image size (end to
end with the serial and/or the overlapped file loop, ``--pipeline``), the input pipeline's own rate (no model), the
vision / adapter / language-model / pipeline split, score drift between batch sizes, peak memory, and MFU against
the card's bf16 peak. ``--scale tiny`` runs the same code with tiny dimensions, so it is tested on CPU before a GPU
session spends its minutes. Figures go to stdout as a table and to ``--out`` (default ``$OUT/throughput.jsonl``
where ``$OUT`` is set) as JSON lines, one per figure, as they come::

    python benchmarks/throughput.py --arch qwen2.5-vl-7b                  # full size, CUDA bf16
    python benchmarks/throughput.py --arch llava-1.5-7b --scale tiny      # the same code path on CPU, in seconds
    python benchmarks/throughput.py --arch qwen2.5-vl-7b --vision-attention both   # grouped vs stock vision attention
    python benchmarks/throughput.py --arch qwen2.5-vl-7b --pipeline both  # serial vs overlapped file loop
    python benchmarks/throughput.py --arch qwen2.5-vl-7b --fixed-shapes both       # default vs --reproducible

``--fixed-shapes both`` runs every setting in the default mode (shapes follow the batch) and in fixed shapes
(``--reproducible``, :mod:`vcritic.inference.shapes`), so one run prints the speed cost and the drift of each mode side
by side
(with ``--vision-attention both``, fixed shapes run with the grouped attention only). MFU counts the real images'
FLOPs, so the copies that fill a partial group show as lost MFU.

Without ``--arch``, the original mode:

Scores the same folder of images with several (batch size, workers) settings through the real file pipeline
(`vcritic.pipeline.scoring.score_paths`) and prints images/s, the speed-up over the peers' batch-size-1 inline setting,
the
largest score difference from that setting (batch invariance, 0-100 scale) and, on CUDA, the peak memory.

    python benchmarks/throughput.py                        # a small random LLaVA built here (CPU-sized)
    python benchmarks/throughput.py --model /ckpt --device cuda --images 512 --batch-sizes 1 8 32
"""

from __future__ import annotations

import argparse
import importlib.util
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


# -- --arch: full-size random models of released architectures ------------------------------------------------------
def _sibling(name: str):
    """Another script of benchmarks/, imported from its file (this one also runs as a file, outside any package)."""
    spec = importlib.util.spec_from_file_location(f"benchmarks_{name}", Path(__file__).with_name(f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_QWEN3_5_0_8B = _sibling("cpu_judges").QWEN3_5_0_8B
_LLAMA_7B = dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
                 num_key_value_heads=32, max_position_embeddings=4096)  # fmt: skip
ARCHES = {
    "qwen2.5-vl-7b": dict(
        family="qwen2_5_vl",
        text_config=dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
                         num_key_value_heads=4, vocab_size=152064, max_position_embeddings=128000,
                         rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": [16, 24, 24]}),
        vision_config=dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, out_hidden_size=3584,
                           window_size=112, fullatt_block_indexes=[7, 15, 23, 31]),
    ),  # Qwen/Qwen2.5-VL-7B-Instruct; 12845056 max pixels: 999 tokens for 1024x768
    "llava-1.5-7b": dict(
        family="llava",
        text_config=dict(_LLAMA_7B, vocab_size=32064),
        vision_config=dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                           image_size=336, patch_size=14, projection_dim=768),
        top=dict(vision_feature_layer=-2),
        image_size=336,  # CLIP ViT-L/14-336: 576 tokens per image
    ),  # llava-hf/llava-1.5-7b-hf
    "instructblip-vicuna-7b": dict(
        family="instructblip",
        text_config=dict(_LLAMA_7B, vocab_size=32001),
        vision_config=dict(hidden_size=1408, intermediate_size=6144, num_hidden_layers=39, num_attention_heads=16,
                           image_size=224, patch_size=14),
        qformer_config=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                            encoder_hidden_size=1408, vocab_size=30523),
        top=dict(num_query_tokens=32),
        image_size=224,  # EVA ViT-g/14 at 224 px, 32 query tokens
    ),  # Salesforce/instructblip-vicuna-7b
    # Qwen3.5: 3 Gated-DeltaNet linear-attention layers to 1 full-attention layer; layer_types is rebuilt for the
    # full depth from full_attention_interval (see _DERIVED). Vision: Qwen3-VL's tower without DeepStack.
    "qwen3.5-0.8b": dict(
        family="qwen3_5",
        text_config=_QWEN3_5_0_8B["text"],
        vision_config=_QWEN3_5_0_8B["vision"],
        top=dict(tie_word_embeddings=True),
    ),  # Qwen/Qwen3.5-0.8B (Q-ReAlign Mini's base); the sizes live in benchmarks/cpu_judges.py
    "qwen3.5-4b": dict(
        family="qwen3_5",
        text_config=dict(vocab_size=248320, hidden_size=2560, intermediate_size=9216, num_hidden_layers=32,
                         num_attention_heads=16, num_key_value_heads=4, head_dim=256, linear_num_key_heads=16,
                         linear_num_value_heads=32, linear_key_head_dim=128, linear_value_head_dim=128,
                         linear_conv_kernel_dim=4, full_attention_interval=4, tie_word_embeddings=True,
                         rope_parameters={"rope_type": "default", "rope_theta": 10000000.0,
                                          "partial_rotary_factor": 0.25, "mrope_section": [11, 11, 10],
                                          "mrope_interleaved": True}),
        vision_config=dict(depth=24, hidden_size=1024, intermediate_size=4096, num_heads=16, patch_size=16,
                           spatial_merge_size=2, temporal_patch_size=2, out_hidden_size=2560,
                           num_position_embeddings=2304),
        top=dict(tie_word_embeddings=True),
    ),  # Qwen/Qwen3.5-4B (Q-ReAlign Lite's base). Its own config.json is not in the searchable index: these are a
    # complete qwen3_5 config.json of the 2560-wide, 32-layer size (a Rust reader's test fixture, CHANDRA_CONFIG_JSON),
    # whose text dims match a test fixture labelled "Qwen3.5 4B topology"; the built model has the released 4.5 B.
    "qwen3-vl-8b": dict(
        family="qwen3_vl",
        text_config=dict(vocab_size=151936, hidden_size=4096, intermediate_size=12288, num_hidden_layers=36,
                         num_attention_heads=32, num_key_value_heads=8, head_dim=128, max_position_embeddings=262144,
                         tie_word_embeddings=False,
                         rope_parameters={"rope_type": "default", "rope_theta": 5000000.0,
                                          "mrope_section": [24, 20, 20], "mrope_interleaved": True}),
        vision_config=dict(depth=27, hidden_size=1152, intermediate_size=4304, num_heads=16, patch_size=16,
                           spatial_merge_size=2, temporal_patch_size=2, out_hidden_size=4096,
                           num_position_embeddings=2304, deepstack_visual_indexes=[8, 16, 24]),
        top=dict(tie_word_embeddings=False),
    ),  # Qwen/Qwen3-VL-8B-Instruct. Its own config.json is not in the searchable index: these are the config.json of
    # nvidia/Cosmos-Reason2-8B (a Qwen3-VL-8B fine-tune, same architecture; quoted in a repository that loads it), the
    # same text dims as Qwen-Image-2.1's Qwen3-VL-8B text encoder; the built model has the released 8.77 B.
}  # fmt: skip
QWEN_PIXELS = (3136, 12845056)  # the released Qwen2.5-VL preprocessor's min/max pixels
QWEN3_PIXELS = (65536, 16777216)  # Qwen3-VL's and Qwen3.5's (Qwen/Qwen3.5-2B-Base preprocessor_config.json)
# The released pixel budget, applied at both scales: the tiny models see as many image tokens as the real ones.
_PIXELS = {"qwen2_5_vl": QWEN_PIXELS, "qwen3_vl": QWEN3_PIXELS, "qwen3_5": QWEN3_PIXELS}
BF16_PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "H800": 989.0, "A100": 312.0, "L40S": 362.0, "A10": 125.0}
# Derived from the layer count in the configs' own __init__: rebuilt, not copied from the tiny config.
_DERIVED = ("head_dim", "layer_types", "max_window_layers")


def _grown(sub_config, overrides: dict):
    values = {k: v for k, v in sub_config.to_dict().items() if k not in _DERIVED}
    return type(sub_config)(**{**values, **overrides})


def build_arch(name: str, scale: str, folder: Path, device, dtype):
    """A random model of ``name`` (full or tiny dims) in memory on ``device``, wrapped as a Critic, and its size."""
    import torch
    from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor
    from transformers.image_utils import SizeDict

    from vcritic.inference.critic import Critic
    from vcritic.inference.encoder import Family
    from vcritic.inference.loading import with_attention
    from vcritic.testing import build_tiny

    spec = ARCHES[name]
    tiny = build_tiny(spec["family"], folder / "tiny")  # tokenizer, processor and token ids
    processor = AutoProcessor.from_pretrained(tiny)
    config = AutoConfig.from_pretrained(tiny)
    if spec["family"] in _PIXELS:
        least, most = _PIXELS[spec["family"]]
        processor.image_processor.size = SizeDict(shortest_edge=least, longest_edge=most)
    if scale == "full":
        for key in ("text_config", "vision_config", "qformer_config"):
            if key in spec:
                setattr(config, key, _grown(getattr(config, key), spec[key]))
        for key, value in spec.get("top", {}).items():
            setattr(config, key, value)
        side = spec.get("image_size")
        if spec["family"] == "llava":
            processor.image_processor.size = SizeDict(shortest_edge=side)
            processor.image_processor.crop_size = SizeDict(height=side, width=side)
            processor.patch_size = spec["vision_config"]["patch_size"]
        elif side:
            processor.image_processor.size = SizeDict(height=side, width=side)
            processor.num_query_tokens = spec["top"]["num_query_tokens"]
    started = time.perf_counter()
    with torch.device(device):
        model = with_attention(AutoModelForImageTextToText.from_config, config, dtype=dtype)
    model.eval().requires_grad_(False)
    if spec["family"] == "instructblip":  # see vcritic.testing: BLIP's random init is blind to the image
        with torch.no_grad():
            model.vision_model.embeddings.patch_embedding.weight.normal_(0.0, 0.02)
            model.query_tokens.normal_(0.0, 0.02)
    seconds = time.perf_counter() - started
    family = Family.detect(config.model_type, processor)
    critic = Critic(model, processor, family=family, device=torch.device(device), dtype=dtype, source=f"random {name}")
    params = sum(p.numel() for p in model.parameters())
    return critic, params, seconds


def _parts(model) -> dict[str, object]:
    """The vision tower, adapter and language model of a wrapper, by the names transformers gives them."""
    found = {}
    for part, names in (("vision", ("visual", "vision_tower", "vision_model")), ("adapter", ("qformer",)),
                        ("lm", ("language_model",))):  # fmt: skip
        for module_name, module in model.named_modules():
            if module_name.split(".")[-1] in names:
                found[part] = module
                break
    return found


class PartTimer:
    """Forward hooks that time each part (CUDA events on a GPU, wall clock on CPU)."""

    def __init__(self, model, device):
        import torch

        self.cuda = device.type == "cuda"
        self.spans: dict[str, list] = {}
        self.handles = []
        for part, module in _parts(model).items():
            self.handles.append(module.register_forward_pre_hook(lambda m, a, p=part: self._mark(p, 0)))
            self.handles.append(module.register_forward_hook(lambda m, a, o, p=part: self._mark(p, 1)))
        self._torch = torch

    def _mark(self, part: str, end: int) -> None:
        if self.cuda:
            event = self._torch.cuda.Event(enable_timing=True)
            event.record()
        else:
            event = time.perf_counter()
        spans = self.spans.setdefault(part, [])
        if end:
            spans[-1][1] = event
        else:
            spans.append([event, None])

    def seconds(self) -> dict[str, float]:
        if self.cuda:
            self._torch.cuda.synchronize()
            return {p: sum(a.elapsed_time(b) for a, b in s) / 1000 for p, s in self.spans.items()}
        return {p: sum(b - a for a, b in s) for p, s in self.spans.items()}

    def reset(self) -> None:
        self.spans = {}

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def _peak_mib(device) -> float:
    import resource

    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # the process's peak RSS


def _reset_peak(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()


def _peak_tflops(device, given: float | None) -> float | None:
    import torch

    if given:
        return given
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in BF16_PEAK_TFLOPS.items() if key in name), None)


def _read_padded(critic, batch) -> list:
    """MOS of a padded batch (shared_prefix.collate_questions), whatever the critic's batching strategy: the forward
    of exactly these rows."""
    from vcritic.inference.shared_prefix import answer_logits
    from vcritic.readout.prompts import QUALITY

    return critic.readouts([QUALITY], answer_logits(critic, batch))


def _flops_per_image(critic, batch) -> float:
    """Model FLOPs of one forward of a one-image batch (matmuls and attention): torch's own counter where it works,
    else :func:`analytic_flops` (torch 2.11's FlopCounterMode asserts on SDPA with grouped-query shapes, which must
    not stop a benchmark)."""
    from torch.utils.flop_counter import FlopCounterMode

    try:
        with FlopCounterMode(display=False) as counter:
            _read_padded(critic, batch)
        return float(counter.get_total_flops())
    except (AssertionError, RuntimeError, NotImplementedError) as err:
        print(f"# FlopCounterMode failed ({type(err).__name__}); counting FLOPs from the shapes instead", flush=True)
        return analytic_flops(lambda: _read_padded(critic, batch))


def analytic_flops(run, attention: bool = True) -> float:
    """FLOPs of ``run()`` counted from the shapes of its matmul-like calls (linear, matmul/bmm, convolutions and,
    with ``attention``, scaled_dot_product_attention), 2 per multiply-add as FlopCounterMode counts them; causal
    attention is counted in full, as FlopCounterMode does. Elementwise work is left out (a few percent at most)."""
    import math

    import torch
    import torch.nn.functional as F
    from torch.overrides import TorchFunctionMode

    total = 0.0

    def count(func, args, kwargs):
        nonlocal total
        if func is F.linear:
            x, w = args[0], args[1]
            total += 2 * x.numel() // x.shape[-1] * w.shape[0] * w.shape[1]
        elif func in (torch.matmul, torch.Tensor.matmul, torch.bmm, torch.mm, torch.Tensor.__matmul__):
            a, b = args[0], args[1]
            if a.dim() >= 2 and b.dim() >= 2:
                batch = math.prod(torch.broadcast_shapes(a.shape[:-2], b.shape[:-2]))
                total += 2 * batch * a.shape[-2] * a.shape[-1] * b.shape[-1]
        elif func in (F.conv1d, F.conv2d, F.conv3d):
            x, w = args[0], args[1]
            out = func(*args, **kwargs)
            per_output = w.shape[1] * math.prod(w.shape[2:])  # input channels (per group) x kernel volume
            total += 2 * out.numel() * per_output
            return out
        elif func is F.scaled_dot_product_attention and attention:
            q, k = args[0], args[1]
            heads_and_batch = math.prod(q.shape[:-2])
            total += 4 * heads_and_batch * q.shape[-2] * k.shape[-2] * q.shape[-1]  # QK^T and PV
        return None

    class _Count(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            done = count(func, args, kwargs)
            return done if done is not None else func(*args, **kwargs)

    with _Count():
        run()
    return float(total)


def run_arch(args) -> None:
    import json
    import os

    import torch

    from vcritic.inference.shared_prefix import collate_questions
    from vcritic.model.runtime import resolve_device, resolve_dtype
    from vcritic.model.vision_attention import NAME, use_for_vision
    from vcritic.pipeline.scoring import _EncodeQuestions, _loader, score_paths
    from vcritic.readout.prompts import QUALITY

    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype, device)
    tiny = args.scale == "tiny"
    count = args.images or (8 if tiny else 64)
    out = args.out or (os.path.join(os.environ["OUT"], "throughput.jsonl") if os.environ.get("OUT") else None)
    sink = open(out, "a", encoding="utf-8") if out else None  # noqa: SIM115 - stays open for the whole run

    def emit(record: dict) -> None:
        record = {"arch": args.arch, "scale": args.scale, **record}
        if sink:
            sink.write(json.dumps(record) + "\n")
            sink.flush()

    # The issue's two settings: the paper's fixed 448 px input, and KonIQ's 1024x768 at the processor's defaults.
    sizes = [("448x448", (448, 448), [1, 8, 32]), ("1024x768", (1024, 768), [1, 16])]
    if args.sizes:
        sizes = [size for size in sizes if size[0] in args.sizes.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        critic, params, build_s = build_arch(args.arch, args.scale, folder, device, dtype)
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
        peak = _peak_tflops(device, args.peak_tflops)
        print(f"arch: {args.arch} ({args.scale}), {params / 1e9:.4g} B parameters, built in {build_s:.1f} s; "
              f"device: {name}, dtype: {str(dtype).removeprefix('torch.')}, images/setting: {count}")  # fmt: skip
        emit({"figure": "model", "params": params, "build_s": build_s, "device": name, "dtype": str(dtype),
              "peak_tflops": peak})  # fmt: skip
        timer = PartTimer(critic.model, device)
        encode = _EncodeQuestions([QUALITY])
        # Qwen2-VL/2.5-VL only: the vision tower with vcritic's grouped attention and/or stock per-segment SDPA.
        implementation = {"grouped": NAME, "sdpa": "sdpa"}
        attentions = ["grouped", "sdpa"] if args.vision_attention == "both" else [args.vision_attention]
        if not use_for_vision(critic.model, implementation[attentions[0]]):
            attentions = ["-"]
        modes = ["off", "on"] if args.fixed_shapes == "both" else [args.fixed_shapes]
        # (attention, fixed shapes) settings: fixed shapes are timed with the attention vcritic loads, not both.
        settings = [(a, m) for a in attentions for m in modes if a == attentions[0] or m == modes[0]]
        pipelines = ["old", "overlap"] if args.pipeline == "both" else [args.pipeline]
        if device.type == "cuda":
            same = _bf16_cast_matches(device)
            print(f"fp32 -> bf16 cast, {same[1]:,} values: CPU and GPU bitwise equal: {same[0]}")
            emit({"figure": "bf16_cast_cpu_equals_gpu", "equal": same[0], "values": same[1]})
        print(f"{'image':>9} {'batch':>5} {'tokens':>6} {'vis.att':>7} {'shapes':>6} {'pipeline':>8} {'fwd img/s':>9} "
              f"{'e2e img/s':>9} {'e2e/fwd':>7} {'load img/s':>10} {'vision':>6} {'adapter':>7} {'lm':>5} "
              f"{'other':>5} {'pipe':>5} {'max|dMOS|':>9} {'peak MiB':>9} {'TFLOP/s':>8} {'MFU':>6}")  # fmt: skip
        for label, (width, height), batch_sizes in sizes:
            batch_sizes = args.batch_sizes or ([1, 4] if tiny else batch_sizes)
            paths = _jpegs(folder / label, count, width, height)
            encodings = [critic.encoder.encode_questions([QUALITY], _open(p)) for p in paths]
            first = encodings[0]  # the prompt's tokens: the image prefix and MOS's suffix, or the full prompt
            tokens = (int(first["prefix"]["input_ids"].shape[1]) + len(first["suffix_ids"][0]) if "prefix" in first
                      else int(first["full"][0]["input_ids"].shape[1]))  # fmt: skip
            one = collate_questions(critic.encoder, encodings[:1])  # padded, whatever the mode: FLOPs of one image
            seen: dict[tuple[str, str, int, str], list[float]] = {}  # (attention, shapes, batch, pipeline) -> scores
            rates: dict[tuple[str, str, int], tuple[float, float]] = {}  # (attention, shapes, batch) -> (e2e, drift)
            for attention, mode in settings:
                if attention != "-":  # before/after of the vision tower's attention, same weights and inputs
                    use_for_vision(critic.model, implementation[attention])
                critic.fixed_shapes = mode == "on"
                _read_padded(critic, one)  # warm-up: kernels, allocator
                if device.type == "cuda":  # what limits the overlap: a launch returns only after its last sync
                    syncs = _host_syncs(critic, one)
                    where = ", ".join(f"{line} x{n}" for line, n in syncs[:8]) if isinstance(syncs, list) else syncs
                    total = sum(n for _, n in syncs) if isinstance(syncs, list) else None
                    print(f"{label} {attention}: host syncs in one launch: {total} ({where})", flush=True)
                    emit({"figure": "host_syncs", "image": label, "vision_attention": attention, "total": total,
                          "where": syncs})  # fmt: skip
                flops = _flops_per_image(critic, one)
                reference = None
                for batch_size in batch_sizes:
                    # Forward only: pre-encoded, pre-collated batches (host-to-device copy included).
                    batches = [critic.encoder.collate_questions(encodings[i : i + batch_size])
                               for i in range(0, count, batch_size)]  # fmt: skip
                    critic.read_shared([QUALITY], batches[0])
                    _sync(device)
                    _reset_peak(device)
                    timer.reset()
                    start = time.perf_counter()
                    for batch in batches:
                        critic.read_shared([QUALITY], batch)
                    _sync(device)
                    forward_s = time.perf_counter() - start
                    split = timer.seconds()
                    fwd_rate = count / forward_s
                    achieved = flops * fwd_rate / 1e12
                    mfu = achieved / peak if peak else None
                    parts = {p: split.get(p, 0.0) / forward_s for p in ("vision", "adapter", "lm")}
                    other = max(0.0, 1 - sum(parts.values()))
                    by_pipeline: dict[str, list[float]] = {}
                    for pipeline in pipelines:
                        # The input pipeline alone (decode, preprocess, collate, cast, receive, pin; no model): the
                        # most end to end can reach with these workers.
                        dtype_in_workers = critic.dtype if pipeline == "overlap" else None
                        start = time.perf_counter()
                        for _ in _loader(critic, paths, 0, encode, batch_size, args.workers, True, dtype_in_workers):
                            pass
                        load_rate = count / (time.perf_counter() - start)
                        # End to end: JPEG files in, rows out, through the real pipeline (workers decode while it
                        # runs); "old" finishes each batch before the next, "overlap" keeps one in flight.
                        start = time.perf_counter()
                        rows = list(score_paths(critic, paths, batch_size=batch_size, workers=args.workers,
                                                overlap=pipeline == "overlap"))  # fmt: skip
                        _sync(device)
                        e2e_s = time.perf_counter() - start
                        assert all(row.error is None for row in rows), [row.error for row in rows if row.error][:3]
                        scores = [row.mos for row in rows]
                        reference = reference or scores
                        drift = max(abs(a - b) for a, b in zip(scores, reference, strict=True))
                        seen[attention, mode, batch_size, pipeline] = scores
                        first = (
                            seen.get((attentions[0], mode, batch_size, pipeline))
                            if attention != attentions[0]
                            else None
                        )
                        vs_other = _largest_difference(scores, first)
                        default_shapes = seen.get((attention, "off", batch_size, pipeline)) if mode == "on" else None
                        vs_shapes = _largest_difference(scores, default_shapes)
                        vs_old = _largest_difference(scores, by_pipeline.get("old"))
                        by_pipeline[pipeline] = scores
                        e2e_rate = count / e2e_s
                        rates[attention, mode, batch_size] = (e2e_rate, drift)  # the last loop: vcritic's own
                        record = {"figure": "throughput", "image": label, "batch": batch_size, "tokens": tokens,
                                  "vision_attention": attention, "max_abs_dmos_vs_other_attention": vs_other,
                                  "fixed_shapes": mode == "on", "max_abs_dmos_vs_default_shapes": vs_shapes,
                                  "pipeline": pipeline, "max_abs_dmos_vs_old_pipeline": vs_old,
                                  "forward_img_s": fwd_rate, "e2e_img_s": e2e_rate, "loader_img_s": load_rate,
                                  "e2e_over_forward": e2e_rate / fwd_rate, "split_s": split, "forward_s": forward_s,
                                  "e2e_s": e2e_s,
                                  "pipeline_share": 1 - forward_s / e2e_s, "max_abs_dmos_vs_batch1": drift,
                                  "peak_mib": _peak_mib(device), "flops_per_image": flops, "tflops": achieved,
                                  "mfu": mfu}  # fmt: skip
                        if args.tasks_drift and pipeline == pipelines[-1] and attention == attentions[0]:
                            # A score must not depend on which other outputs were asked for (issue 17).
                            every = ("mos", "attributes", "authenticity")
                            rows_all = list(score_paths(critic, paths, tasks=every, batch_size=batch_size,
                                                        workers=args.workers))  # fmt: skip
                            record["max_abs_dmos_tasks_all_vs_mos"] = _largest_difference(
                                [row.mos for row in rows_all], scores
                            )
                            print(f"{label} batch {batch_size} shapes {mode}: max|dMOS| --tasks all vs mos only: "
                                  f"{record['max_abs_dmos_tasks_all_vs_mos']:.3e}", flush=True)  # fmt: skip
                        emit(record)
                        mfu_text = f"{mfu:>6.1%}" if mfu is not None else f"{'-':>6}"
                        shapes = "fixed" if mode == "on" else "batch"
                        print(f"{label:>9} {batch_size:>5} {tokens:>6} {attention:>7} {shapes:>6} {pipeline:>8} "
                              f"{fwd_rate:>9.2f} {e2e_rate:>9.2f} {e2e_rate / fwd_rate:>7.2f} {load_rate:>10.1f} "
                              f"{parts['vision']:>6.0%} {parts['adapter']:>7.0%} {parts['lm']:>5.0%} {other:>5.0%} "
                              f"{record['pipeline_share']:>5.0%} {drift:>9.2e} {record['peak_mib']:>9.0f} "
                              f"{achieved:>8.3g} {mfu_text}", flush=True)  # fmt: skip
            if len(modes) == 2:
                print(_modes_line(label, attentions[0], batch_sizes, rates), flush=True)
        timer.remove()
    if sink:
        sink.close()
        print(f"figures: {out}")


def _host_syncs(critic, batch) -> list[tuple[str, int]] | str:
    """Where one launch (copy, forward and read-out of a batch, what the file loop queues) makes the host wait for
    the GPU, as (file:line, count), most first; torch's sync debug mode names them. A string if that failed."""
    import collections
    import warnings

    import torch

    torch.cuda.synchronize()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                _read_padded(critic, batch)
            finally:
                torch.cuda.set_sync_debug_mode("default")
    except Exception as err:  # a figure, not a reason to lose the rest of a GPU session
        return f"not measured: {type(err).__name__}: {err}"
    found = (f"{Path(w.filename).name}:{w.lineno}" for w in caught if "synchroniz" in str(w.message))
    return collections.Counter(found).most_common()


def _bf16_cast_matches(device) -> tuple[bool, int]:
    """Whether fp32 -> bf16 rounds alike on the CPU (the file pipeline's workers) and on ``device``: normalized
    pixel values and every float32 bit pattern class (NaN compared as NaN)."""
    import torch

    generator = torch.Generator().manual_seed(0)
    pixels = torch.randn(4_000_000, generator=generator) * 1.5
    bits = torch.randint(-(2**31), 2**31 - 1, (4_000_000,), generator=generator, dtype=torch.int32).view(torch.float32)
    values = torch.cat([pixels, bits])
    on_cpu = values.to(torch.bfloat16)
    on_device = values.to(device).to(torch.bfloat16).cpu()
    both_nan = torch.isnan(on_cpu) & torch.isnan(on_device)
    equal = bool(((on_cpu.view(torch.int16) == on_device.view(torch.int16)) | both_nan).all())
    return equal, values.numel()


def _modes_line(label: str, attention: str, batch_sizes: list[int], rates: dict) -> str:
    """One line per image size: fixed shapes' end-to-end speed relative to the default, and each mode's drift."""
    speed = ", ".join(f"{b}: {rates[attention, 'on', b][0] / rates[attention, 'off', b][0]:.2f}x" for b in batch_sizes)
    drift = {mode: max(rates[attention, mode, b][1] for b in batch_sizes) for mode in ("off", "on")}
    return (
        f"{label:>9} fixed shapes vs default: e2e speed {speed}; max|dMOS| across batch sizes: default "
        f"{drift['off']:.2e}, fixed {drift['on']:.2e}"
    )


def _largest_difference(scores: list[float], other: list[float] | None) -> float | None:
    """max |a - b| against the scores of the same images in another setting, if it ran."""
    return None if other is None else max(abs(a - b) for a, b in zip(scores, other, strict=True))


def _jpegs(folder: Path, count: int, width: int, height: int) -> list[Path]:
    """``count`` natural images (scikit-image's, else seeded noise over gradients where it is not installed, as on
    a bare GPU machine) at exactly ``width`` x ``height``, as JPEG files."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    try:
        from skimage import data

        sources = [data.astronaut(), data.chelsea(), data.coffee(), data.rocket()]
    except ImportError:
        rng = np.random.default_rng(0)
        ramp = np.linspace(0, 255, 256, dtype=np.float32)
        sources = [np.clip(ramp[None, :, None] * (k + 1) / 4 + rng.normal(0, 20 * k + 5, (192, 256, 3)), 0, 255)
                   .astype(np.uint8) for k in range(4)]  # fmt: skip
    paths = []
    for i in range(count):
        image = Image.fromarray(sources[i % len(sources)]).convert("RGB").resize((width, height))
        path = folder / f"img{i:04d}.jpg"
        image.save(path, quality=90 - i % 30)  # different files, so scores differ between images
        paths.append(path)
    return paths


def _open(path: Path):
    from vcritic.base.images import load_image

    return load_image(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", choices=sorted(ARCHES), help="a full-size random model of this architecture")
    parser.add_argument("--scale", choices=("full", "tiny"), default="full", help="with --arch: real or tiny dims")
    parser.add_argument("--out", help="with --arch: JSON-lines file for the figures (default $OUT/throughput.jsonl)")
    parser.add_argument("--vision-attention", choices=("grouped", "sdpa", "both"), default="grouped",
                        help="with --arch, Qwen-VL: vcritic's grouped vision attention (what loading sets), stock "
                        "per-segment sdpa, or both in one run (before/after)")  # fmt: skip
    parser.add_argument("--pipeline", choices=("old", "overlap", "both"), default="overlap",
                        help="with --arch: the end-to-end loop: each batch read back before the next (old), "
                        "one batch in flight, pixels cast in the workers (overlap, what vcritic does), "
                        "or both")  # fmt: skip
    parser.add_argument("--fixed-shapes", choices=("off", "on", "both"), default="off",
                        help="with --arch: shapes follow the batch (off, the default mode), fixed shapes "
                        "(--reproducible), or both in one run: speed and drift of each mode")  # fmt: skip
    parser.add_argument("--sizes", help="with --arch: only these of 448x448,1024x768 (comma-separated)")
    parser.add_argument("--tasks-drift", action="store_true",
                        help="with --arch: also score with --tasks all and report the MOS difference")  # fmt: skip
    parser.add_argument("--peak-tflops", type=float, help="with --arch: the card's dense bf16 peak, for MFU")
    parser.add_argument("--model", help="checkpoint (default: a random LLaVA, hidden 256, 4 layers, 224 px)")
    parser.add_argument("--device", default=None)
    parser.add_argument("--dtype", default=None)
    parser.add_argument("--images", type=int, default=None, help="images per setting (default 96; --arch: 64, tiny 8)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=None, help="default 1 8 32 (tiny --arch: 1 4)")
    parser.add_argument("--workers", type=int, default=None, help="workers for batched runs (default: vcritic's)")
    args = parser.parse_args()
    if args.arch:
        run_arch(args)
        return
    args.images = args.images or 96
    args.batch_sizes = args.batch_sizes or [1, 8, 32]

    import torch

    from vcritic.inference.loading import load_critic
    from vcritic.pipeline.scoring import default_workers, score_paths
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
