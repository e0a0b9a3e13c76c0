"""Learning benchmark: does a tiny model learn to rank distortions of pictures it never saw?

Everything runs through the user-facing commands: pictures that ship with scikit-image are cut into small tiles,
``vcritic data synth`` distorts them (eight kinds, five levels) and writes the pairs whose order is certain,
``vcritic train --stage 1 --config tiny`` trains a tiny random LLaVA on the pairs of the training pictures, and
``vcritic.pipeline.scoring.compare_paths`` (what ``vcritic compare --pairs`` runs) asks the trained and the untrained
model
about the pairs of *other* pictures. Printed beside them: BRISQUE, a classical no-reference metric, on the same
pairs. Figures go to stdout, progress to stderr.

    python benchmarks/learning.py --threads 1                       # ~16 min on a shared 2-core machine
    python benchmarks/learning.py --brisque-python /tmp/brisque-venv/bin/python

Why tiles: the tiny model sees 32 x 32 pixels. Shrinking a whole picture to that size would erase blur, noise
and JPEG artefacts before the model sees them, so each source is a crop at the picture's own resolution, the
size the model reads (a real checkpoint reads 224-448 px and needs no such step).

BRISQUE (the ``brisque`` package: bundled SVM, needs opencv and numpy < 2.4) runs in the Python interpreter given
by ``--brisque-python`` (e.g. a separate venv: ``python -m venv /tmp/brisque-venv && /tmp/brisque-venv/bin/pip
install brisque opencv-python-headless "numpy<2.4"``); without it the benchmark says so and goes on.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

# Pictures in skimage.data that need no download. Held-out pictures are never seen in training.
TRAIN_PICTURES = (
    "astronaut", "rocket", "hubble_deep_field", "immunohistochemistry", "retina", "colorwheel", "logo",
    "camera", "brick", "grass", "moon", "coins", "cell", "text", "page",
)  # fmt: skip
HELD_OUT_PICTURES = ("chelsea", "coffee", "motorcycle", "gravel", "clock")

BRISQUE_SCRIPT = """
import json, sys, warnings
warnings.filterwarnings("ignore")
import numpy as np
from PIL import Image
from brisque import BRISQUE
metric = BRISQUE(url=False)
for line in sys.stdin:
    path = line.rstrip("\\n")
    print(json.dumps([path, float(metric.score(np.asarray(Image.open(path).convert("RGB"))))]), flush=True)
"""


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def picture(name: str):
    """An RGB picture from skimage.data (grey ones as RGB; RGBA on white)."""
    from PIL import Image
    from skimage import data

    array = data.stereo_motorcycle()[0] if name == "motorcycle" else getattr(data, name)()
    image = Image.fromarray(array)
    if image.mode == "RGBA":
        background = Image.new("RGB", image.size, (255, 255, 255))
        background.paste(image, mask=image.getchannel("A"))
        image = background
    return image.convert("RGB")


def cut_tiles(names, folder: Path, *, size: int, per_picture: int, seed: int) -> int:
    """Random ``size`` x ``size`` crops with some texture (flat sky shows no blur); returns the count written."""
    import numpy as np

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    count = 0
    for name in names:
        image = picture(name)
        written = 0
        for _ in range(per_picture * 30):
            if written == per_picture:
                break
            x, y = rng.integers(0, image.width - size + 1), rng.integers(0, image.height - size + 1)
            tile = image.crop((int(x), int(y), int(x) + size, int(y) + size))
            if np.asarray(tile.convert("L"), dtype=np.float32).std() < 12:
                continue
            tile.save(folder / f"{name}_{written:03d}.png")
            written += 1
        count += written
    return count


def vcritic(*args: str) -> float:
    """Run a vcritic command as a user would (``python -m vcritic``); returns its wall time in seconds."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "vcritic", *args], check=True)
    return time.perf_counter() - start


def certain_pairs(data_dir: Path):
    """(better, worse, kind) from the pairs ``vcritic data synth`` wrote (both of its files)."""
    from vcritic.data.dialogues import read_dialogues
    from vcritic.readout.prompts import COMPARE

    first = COMPARE.answer(COMPARE.words[0])
    pairs = []
    for name in ("dialogues.jsonl", "val.jsonl"):
        if (data_dir / name).is_file():
            for d in read_dialogues(data_dir / name):
                a, b = (str(data_dir / p) for p in d.images)
                pairs.append((a, b, d.meta["kind"]) if d.answer == first else (b, a, d.meta["kind"]))
    return pairs


def accuracy_by_kind(correct: list[tuple[str, float]]) -> dict[str, float]:
    by_kind: dict[str, list[float]] = defaultdict(list)
    for kind, value in correct:
        by_kind[kind].append(value)
        by_kind["all"].append(value)
    return {kind: sum(v) / len(v) for kind, v in by_kind.items()}


def model_accuracy(model: Path, pairs) -> dict[str, float]:
    """Pair accuracy through compare_paths (both orders averaged); a tie counts half."""
    from vcritic.inference.loading import load_critic
    from vcritic.pipeline.scoring import compare_paths
    from vcritic.readout.schema import verdict

    critic = load_critic(model, device="cpu")
    rows = compare_paths(critic, [(a, b) for a, b, _ in pairs], batch_size=64, workers=0)
    correct = []
    for (_, _, kind), row in zip(pairs, rows, strict=True):
        p = row.p_a_better
        correct.append((kind, {"a": 1.0, "tie": 0.5, "b": 0.0}[verdict(p)]))
    return accuracy_by_kind(correct)


def brisque_accuracy(python: str | None, pairs) -> tuple[dict[str, float] | None, str]:
    """BRISQUE (lower is better) on each image, run in ``python``; (None, reason) when it cannot run."""
    if not python:
        return None, "not available (no --brisque-python given)"
    paths = sorted({p for a, b, _ in pairs for p in (a, b)})
    try:
        done = subprocess.run(
            [python, "-c", BRISQUE_SCRIPT], input="\n".join(paths) + "\n", capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError) as err:
        reason = getattr(err, "stderr", "") or str(err)
        return None, f"not available ({reason.strip().splitlines()[-1] if reason.strip() else err})"
    scores = dict(json.loads(line) for line in done.stdout.splitlines() if line.strip())
    correct = []
    for a, b, kind in pairs:
        sa, sb = scores[a], scores[b]
        correct.append((kind, 1.0 if sa < sb else 0.5 if sa == sb else 0.0))
    return accuracy_by_kind(correct), f"{len(paths)} images"


def main() -> None:
    from vcritic.data.dialogues import read_dialogues, write_dialogues
    from vcritic.testing import LEARNER, build_llava

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, help="keep data and models here (default: a temporary folder)")
    parser.add_argument("--tiles", type=int, default=12, help="training tiles per training picture")
    parser.add_argument("--held-out-tiles", type=int, default=4, help="tiles per held-out picture")
    parser.add_argument("--config", default="tiny", help="training preset or YAML (default: tiny)")
    parser.add_argument("--steps", type=int, help="override the preset's steps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--eval-every", type=int, default=250, help="steps between held-out evaluations during training (0: none)"
    )
    parser.add_argument(
        "--threads", type=int, help="CPU threads per process (default: torch's; 1 is much faster on a busy machine)"
    )
    parser.add_argument("--brisque-python", help="a Python with the brisque package, for the classical baseline")
    args = parser.parse_args()
    if args.threads:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)  # the vcritic commands run in child processes
        import torch

        torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        work = args.workdir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        size = LEARNER["image_size"]
        start = time.perf_counter()
        n_train = cut_tiles(TRAIN_PICTURES, work / "tiles-train", size=size, per_picture=args.tiles, seed=args.seed)
        n_test = cut_tiles(
            HELD_OUT_PICTURES, work / "tiles-held-out", size=size, per_picture=args.held_out_tiles, seed=args.seed + 1
        )
        log(f"{n_train} training tiles, {n_test} held-out tiles ({size} px)")
        synth_s = 0.0
        for kind in ("train", "held-out"):
            synth_s += vcritic("data", "synth", str(work / f"tiles-{kind}"), "--out", str(work / f"data-{kind}"),
                               "--val-fraction", "0", "--overwrite")  # fmt: skip
        # The held-out pairs become the training run's validation set, so its periodic evaluation is the curve.
        held_out = work / "data-held-out"
        write_dialogues(
            work / "data-train" / "val.jsonl",
            (
                replace(d, images=tuple(str(held_out / p) for p in d.images))
                for d in read_dialogues(held_out / "dialogues.jsonl")
            ),
        )

        base = build_llava(work / "base", seed=args.seed, **LEARNER)
        train_args = ["train", "--stage", "1", "--model", str(base), "--data", str(work / "data-train")]
        train_args += ["--output", str(work / "trained"), "--config", args.config, "--overwrite"]
        train_args += ["--steps", str(args.steps)] if args.steps else []
        train_args += ["--eval-every", str(args.eval_every)] if args.eval_every else []
        train_s = vcritic(*train_args)
        total_s = time.perf_counter() - start

        pairs = certain_pairs(work / "data-held-out")
        log(f"asking both models about {len(pairs)} held-out pairs")
        untrained = model_accuracy(base, pairs)
        trained = model_accuracy(work / "trained", pairs)
        brisque, note = brisque_accuracy(args.brisque_python, pairs)

        run = json.loads((work / "trained" / "vcritic.json").read_text())
        config = run.get("config", {})
        kinds = sorted(k for k in trained if k != "all") + ["all"]
        threads = args.threads or "torch default"
        print(f"Learning benchmark: tiny LLaVA {LEARNER}; {os.cpu_count()} CPUs, threads per process: {threads}")
        print(f"  training: {n_train} tiles of {len(TRAIN_PICTURES)} pictures; held out: {n_test} tiles of "
              f"{', '.join(HELD_OUT_PICTURES)} ({len(pairs)} pairs)")  # fmt: skip
        print(
            f"  config: {args.config}, steps {config.get('steps')}, batch {config.get('batch_size')}, "
            f"lr {config.get('lr')}; synth {synth_s:.0f} s, train {train_s:.0f} s, total {total_s:.0f} s"
        )
        print(f"  {'kind':<12}{'untrained':>10}{'trained':>10}{'BRISQUE':>10}")
        for kind in kinds:
            b = f"{brisque[kind]:.3f}" if brisque else "-"
            print(f"  {kind:<12}{untrained[kind]:>10.3f}{trained[kind]:>10.3f}{b:>10}")
        print(f"  BRISQUE: {note}")
        curve = [
            r for r in map(json.loads, (work / "trained" / "metrics.jsonl").read_text().splitlines()) if "eval" in r
        ]
        if curve:
            pairs_seen = curve[0]["eval"].get("pairs")
            points = ", ".join(f"{r['step']}: {r['eval']['pair_accuracy']:.3f}" for r in curve)
            print(f"  held-out pair accuracy during training ({pairs_seen} pairs; step: accuracy): {points}")


if __name__ == "__main__":
    main()
