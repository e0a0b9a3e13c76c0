"""``vcritic data synth``: distortions get stronger with level, pairs are ordered and balanced, runs reproduce."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from vcritic.cli.app import app, main
from vcritic.data.dialogues import read_dialogues
from vcritic.data.synth import KINDS, distort, synthesize
from vcritic.datasets import load_manifest
from vcritic.errors import VcriticError
from vcritic.readout.prompts import COMPARE


def psnr(a, b) -> float:
    diff = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    mse = float(np.mean(diff**2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


@pytest.fixture
def sources(tmp_path, sample_images) -> Path:
    folder = tmp_path / "pristine"
    folder.mkdir()
    for name in ("astronaut", "chelsea", "coffee"):
        sample_images[name].save(folder / f"{name}.png")
    (folder / "nested").mkdir()
    sample_images["rocket"].save(folder / "nested" / "rocket.jpg")
    return folder


@pytest.mark.parametrize("kind", list(KINDS))
def test_each_kind_moves_further_from_the_pristine_with_level(sample_images, kind):
    pristine = sample_images["coffee"].resize((96, 64))
    scores = [psnr(pristine, distort(pristine, kind, level, 5, seed=3)) for level in range(1, 6)]
    assert scores[0] < 45, f"{kind} level 1 is barely visible: {scores}"
    assert all(a > b for a, b in zip(scores, scores[1:], strict=False)), f"{kind}: PSNR by level {scores}"


def versions(out: Path) -> dict[str, dict[str, str]]:
    with (out / "manifest.csv").open(newline="") as handle:
        return {row["path"]: row for row in csv.DictReader(handle)}


def test_pairs_name_the_less_distorted_image_and_positions_are_balanced(sources, tmp_path):
    out = tmp_path / "synth"
    record = synthesize(sources, out, size=32, levels=4, kinds=["blur", "noise", "darken"], val_fraction=0.3, seed=1)
    rows = versions(out)
    assert len(rows) == 4 * (1 + 3 * 4)
    train = list(read_dialogues(out / "dialogues.jsonl"))
    val = list(read_dialogues(out / "val.jsonl"))
    # Per source: pristine vs each of 12 distortions, and C(4, 2) = 6 level pairs for each of 3 kinds.
    assert len(train) + len(val) == 4 * (12 + 3 * 6)
    for dialogues in (train, val):
        assert dialogues
        firsts = [d.answer == COMPARE.answer(" first") for d in dialogues]
        assert sum(firsts) * 2 == len(dialogues)
        for dialogue, first in zip(dialogues, firsts, strict=True):
            assert dialogue.question == "compare" and dialogue.task == "relativity"
            assert dialogue.instruction in COMPARE.instructions
            assert dialogue.answer in (COMPARE.answer(" first"), COMPARE.answer(" second"))
            a, b = (rows[p] for p in dialogue.images)
            assert a["ref_id"] == b["ref_id"]
            assert a["kind"] == b["kind"] or "pristine" in (a["kind"], b["kind"])
            better, worse = (a, b) if first else (b, a)
            assert int(better["level"]) < int(worse["level"])
            assert float(better["mos"]) > float(worse["mos"])
            assert all((out / p).is_file() and not Path(p).is_absolute() for p in dialogue.images)
    train_images = {p for d in train for p in d.images}
    val_images = {p for d in val for p in d.images}
    assert not train_images & val_images
    assert record["synth"]["val_sources"] == sorted({rows[p]["ref_id"] for p in val_images})
    assert record["counts"] == {"relativity": {"synth": len(train)}}


def test_same_seed_gives_identical_files_and_another_seed_does_not(sources, tmp_path):
    def run(name: str, seed: int) -> dict[str, bytes]:
        out = tmp_path / name
        synthesize(sources, out, size=24, levels=3, seed=seed, val_fraction=0.25)
        files = ("manifest.csv", "dialogues.jsonl", "val.jsonl", "data.json", "images/coffee_noise_2.png")
        return {f: (out / f).read_bytes() for f in files}

    first, again, other = run("a", 7), run("b", 7), run("c", 8)
    assert first == again
    assert first["dialogues.jsonl"] != other["dialogues.jsonl"]


def test_manifest_is_a_bench_manifest_split_by_source(sources, tmp_path):
    from vcritic.evaluation.bench import prepare

    out = tmp_path / "synth"
    synthesize(sources, out, size=16, levels=2, kinds=["jpeg"])
    records = load_manifest(out / "manifest.csv")
    assert len(records) == 4 * 3
    assert sorted({r.mos for r in records}) == pytest.approx([100 / 3, 100 * 2 / 3, 100.0], abs=1e-3)
    assert all(r.path.is_file() and r.ref_id for r in records)
    test = prepare(str(out / "manifest.csv"), None, split="test")
    train = prepare(str(out / "manifest.csv"), None, split="train")
    assert {r.ref_id for r in test.records}.isdisjoint({r.ref_id for r in train.records})


def test_unreadable_source_is_skipped_and_counted(sources, tmp_path):
    (sources / "broken.jpg").write_bytes(b"not a jpeg")
    result = CliRunner().invoke(app, ["data", "synth", str(sources), "--out", str(tmp_path / "o"), "--size", "16",
                                      "--levels", "2", "--kinds", "blur,contrast"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "Skipped" in result.output and "broken.jpg" in result.output
    info = json.loads((tmp_path / "o" / "data.json").read_text())
    assert info["skipped"] == {"synth": 1}
    assert info["synth"]["sources"] == 4


def test_bad_inputs_are_one_line_errors(sources, tmp_path, capsys):
    out = tmp_path / "o"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert main(["data", "synth", str(sources), "--out", str(out)]) == 1
    assert "--overwrite" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]  # refused before any work
    assert main(["data", "synth", str(tmp_path / "missing"), "--out", str(tmp_path / "x")]) == 1
    assert "no such folder" in capsys.readouterr().err
    assert main(["data", "synth", str(sources), "--out", str(tmp_path / "y"), "--kinds", "blur,sepia"]) == 1
    err = capsys.readouterr().err
    assert "sepia" in err and "Traceback" not in err
    with pytest.raises(VcriticError, match="inside SRC_DIR"):
        synthesize(sources, sources / "out")
    for command in ("synth", "build"):  # numpy's generator refuses a negative seed: was a traceback
        source = [str(sources)] if command == "synth" else ["--stage", "1", "--root", str(sources)]
        assert main(["data", command, *source, "--out", str(tmp_path / "z"), "--seed", "-1"]) == 2
        assert "--seed" in capsys.readouterr().err
        assert not (tmp_path / "z").exists()


def test_a_kind_that_does_not_change_a_source_is_dropped_for_it(tmp_path, sample_images):
    folder = tmp_path / "grey"
    folder.mkdir()
    sample_images["camera"].save(folder / "camera.png")  # greyscale: saturation changes nothing
    sample_images["coffee"].save(folder / "coffee.png")
    record = synthesize(folder, tmp_path / "o", size=32, levels=3, kinds=["saturation", "blur"], val_fraction=0)
    assert record["synth"]["dropped"] == {"camera": ["saturation"]}
    kinds = {(row["ref_id"], row["kind"]) for row in versions(tmp_path / "o").values()}
    assert kinds == {("camera", "pristine"), ("camera", "blur"), ("coffee", "pristine"), ("coffee", "blur"),
                     ("coffee", "saturation")}  # fmt: skip
    pairs = list(read_dialogues(tmp_path / "o" / "dialogues.jsonl"))
    assert len(pairs) == (3 + 3) + (6 + 6)  # camera: blur only; coffee: blur and saturation


def test_overwrite_removes_what_the_earlier_run_wrote_and_nothing_else(sources, tmp_path, capsys):
    out = tmp_path / "o"
    synthesize(sources, out, size=16, levels=3, kinds=["blur", "jpeg"])
    (out / "notes.txt").write_text("mine")
    (out / "images" / "my-own.png").write_bytes(b"mine")  # in images/, but not in the manifest: not vcritic's
    (out / "dialogues.jsonl.tmp").write_text("")  # what a killed run leaves
    (sources / "coffee.png").unlink()
    # Fewer sources, levels and kinds: the earlier run's coffee images, level-3 and jpeg images were left behind.
    args = ["data", "synth", str(sources), "--out", str(out), "--size", "16", "--levels", "2", "--kinds", "blur"]
    assert main([*args, "--overwrite"]) == 0
    on_disk = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    listed = set(versions(out))
    assert len(listed) == 3 * 3  # three sources: pristine, blur 1, blur 2
    assert on_disk == listed | {"images/my-own.png", "notes.txt", "manifest.csv", "data.json", "dialogues.jsonl",
                                "val.jsonl"}  # fmt: skip
    removed = (1 + 6) + 3 * (7 - 3) + 1  # coffee's 7 images; 4 more of each other source; the .tmp file
    assert f"Removed {removed} file(s) an earlier run wrote that this one did not" in capsys.readouterr().err
    for dialogue in read_dialogues(out / "dialogues.jsonl"):
        assert all((out / name).is_file() for name in dialogue.images)
