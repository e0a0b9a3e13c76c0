"""Fixed compute shapes (``--reproducible``, vcritic.inference.shapes): bitwise-equal scores whatever the batch size,
the
neighbours or the dtype; the model only ever sees ROWS items per forward; R halves on out-of-memory."""

from __future__ import annotations

import pytest
import torch
from support.families import family_params
from support.memory import OutOfMemoryAbove
from typer.testing import CliRunner

from vcritic.cli.app import app
from vcritic.engine.batches import TOO_LARGE
from vcritic.errors import VcriticError
from vcritic.inference.loading import load_critic
from vcritic.inference.shapes import ROWS, FixedShapes, group, shape_key
from vcritic.pipeline.scoring import compare_paths, score_paths
from vcritic.readout.tasks import TASKS

ALL = tuple(TASKS)  # mos, attributes, authenticity: seven questions

BATCH_SIZES = (1, 3, 8, 17)
# Qwen2.5-VL sees these sizes as several patch grids (token counts and aspect ratios); the others resize them all.
SIZES = [(40 + 17 * (i % 4), 40 + 23 * (i % 3)) for i in range(18)]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    from PIL import Image
    from skimage import data

    folder = tmp_path_factory.mktemp("shapes")
    sources = [data.astronaut(), data.chelsea(), data.coffee(), data.rocket(), data.camera()]
    paths = []
    for i, size in enumerate(SIZES):
        path = folder / f"img{i:02d}.png"
        Image.fromarray(sources[i % len(sources)]).convert("RGB").resize(size).save(path)
        paths.append(str(path))
    return paths


def _values(row) -> tuple:
    return (row.mos, row.mos_std, row.attributes, row.attributes_std, row.p_ai_generated)


def _fixed(tiny_models, family, dtype="float32", rows=True):
    return load_critic(tiny_models(family), device="cpu", dtype=dtype, fixed_shapes=rows)


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("family", family_params(("llava", "qwen2_5_vl")))
def test_scores_are_bitwise_equal_whatever_the_batch_size_or_neighbours(tiny_models, files, family, dtype):
    critic = _fixed(tiny_models, family, dtype)
    runs = {size: [_values(row) for row in score_paths(critic, files, tasks=ALL, batch_size=size, workers=0)]
            for size in BATCH_SIZES}  # fmt: skip
    reference = runs[1]
    assert all(value is not None for row in reference for value in row)
    for size in BATCH_SIZES:
        assert runs[size] == reference, f"batch size {size}"
    reverse = [_values(row) for row in score_paths(critic, files[::-1], tasks=ALL, batch_size=8, workers=0)]
    assert reverse[::-1] == reference  # other neighbours, other places in the forward
    for index in (0, 5, 11):  # alone, through the Python API
        score = critic.score(files[index], tasks="all")
        assert _values(score) == reference[index]
    # Different images really get different scores: equality is not a constant.
    assert len({row[0] for row in reference}) > len(files) // 2


@pytest.mark.slow
@pytest.mark.parametrize("family", family_params(("blip2", "instructblip")))
def test_blip_families_are_bitwise_equal_too(tiny_models, files, family):
    critic = _fixed(tiny_models, family, "bfloat16")
    runs = [[_values(row) for row in score_paths(critic, files, tasks=ALL, batch_size=size, workers=0)]
            for size in (1, 17)]  # fmt: skip
    assert runs[0] == runs[1]
    pairs = [(files[i], files[-1 - i]) for i in range(9)]
    compared = [[row.p_a_better for row in compare_paths(critic, pairs, batch_size=size, workers=0)]
                for size in (1, 8)]  # fmt: skip
    assert compared[0] == compared[1]


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("family", family_params(("llava", "qwen2_5_vl")))
def test_compare_is_bitwise_equal_whatever_the_batch_size_or_neighbours(tiny_models, files, family, dtype):
    critic = _fixed(tiny_models, family, dtype)
    pairs = [(files[i], files[(5 * i + 3) % len(files)]) for i in range(10)]  # 17: one batch, 8: two
    runs = {size: [row.p_a_better for row in compare_paths(critic, pairs, batch_size=size, workers=0)]
            for size in BATCH_SIZES}  # fmt: skip
    for size in BATCH_SIZES:
        assert runs[size] == runs[1], f"batch size {size}"
    reverse = [row.p_a_better for row in compare_paths(critic, pairs[::-1], batch_size=8, workers=0)]
    assert reverse[::-1] == runs[1]
    assert critic.compare(*pairs[4]).p_a_better == runs[1][4]  # alone, through the Python API
    assert len(set(runs[1])) > len(pairs) // 2


class RowsSeen:
    """Forward pre-hooks recording how many rows each model forward and each language-model forward got."""

    def __init__(self, critic):
        from vcritic.model.compat import text_decoder

        self.model, self.decoder, self.images = [], [], []
        self.handles = [
            critic.model.register_forward_pre_hook(self._top, with_kwargs=True),
            text_decoder(critic.model).register_forward_pre_hook(self._text, with_kwargs=True),
        ]

    def _top(self, module, args, kwargs):
        self.model.append(kwargs["input_ids"].shape[0])
        grid = kwargs.get("image_grid_thw")
        self.images.append(grid.shape[0] if grid is not None else kwargs["pixel_values"].shape[0])

    def _text(self, module, args, kwargs):
        ids = kwargs.get("input_ids")
        self.decoder.append((ids if ids is not None else kwargs["inputs_embeds"]).shape[0])

    def remove(self):
        for handle in self.handles:
            handle.remove()


@pytest.mark.slow
@pytest.mark.parametrize("family", family_params(("llava", "qwen2_5_vl")))
def test_the_model_only_ever_sees_rows_items(tiny_models, files, family):
    critic = _fixed(tiny_models, family)
    seen = RowsSeen(critic)
    try:
        for size in (1, 3, 17):
            list(score_paths(critic, files[:9], tasks=ALL, batch_size=size, workers=0))
        critic.score(files[0])  # one question: the same prefix + suffix path
        scoring = (set(seen.model), set(seen.images), set(seen.decoder))
        seen.model, seen.images, seen.decoder = [], [], []
        list(compare_paths(critic, [(files[0], files[1]), (files[2], files[3]), (files[4], files[0])], batch_size=3,
                           workers=0))  # fmt: skip
        comparing = (set(seen.model), set(seen.images))
    finally:
        seen.remove()
    # Each question's suffix is a forward of its own over the same rows as the prefix.
    assert scoring == ({ROWS}, {ROWS}, {ROWS})
    assert comparing == ({ROWS}, {2 * ROWS})  # two images per comparison prompt
    # The default mode, for contrast: shapes follow the batch.
    critic.fixed_shapes = False
    seen = RowsSeen(critic)
    try:
        list(score_paths(critic, files[:3], batch_size=3, workers=0))
    finally:
        seen.remove()
    assert set(seen.model) == {3}


def test_out_of_memory_halves_rows_and_scores_reproduce_at_the_new_rows(tiny_models, files):
    critic = _fixed(tiny_models, "llava")
    with OutOfMemoryAbove(critic.model, limit=4) as hook:
        rows = list(score_paths(critic, files, batch_size=8, workers=0))
    assert [row.path for row in rows] == files and all(row.error is None for row in rows)
    assert set(hook.seen) == {8, 4}  # the first forward of 8 failed; every other one read 4
    assert critic.fixed_shapes == FixedShapes(rows=4, halved_from=8)
    assert "halved from 8" in critic.fixed_shapes.describe() and "reproduce at 4 rows" in critic.fixed_shapes.describe()
    at_four = _fixed(tiny_models, "llava", rows=4)
    assert [row.mos for row in score_paths(at_four, files, batch_size=3, workers=0)] == [row.mos for row in rows]


def test_out_of_memory_at_one_row_gives_error_rows_not_a_crash(tiny_models, files):
    critic = _fixed(tiny_models, "llava")
    with OutOfMemoryAbove(critic.model, limit=0):
        rows = list(score_paths(critic, files[:5], batch_size=4, workers=0))
    assert [row.path for row in rows] == files[:5]
    assert [row.error for row in rows] == [TOO_LARGE] * 5
    assert critic.fixed_shapes.rows == 1


def test_groups_keep_input_positions_and_tell_qwen_grids_apart():
    ids = torch.zeros((1, 12), dtype=torch.long)
    wide = {"input_ids": ids, "pixel_values": torch.zeros(24, 8), "image_grid_thw": torch.tensor([[1, 4, 6]])}
    tall = {**wide, "image_grid_thw": torch.tensor([[1, 6, 4]])}  # same tensor shapes, other windows
    longer = {**wide, "input_ids": torch.zeros((1, 13), dtype=torch.long)}
    found = group([wide, tall, wide, longer, tall], questions=False)
    assert found.size == 5
    assert [positions for positions, _ in found.groups] == [[0, 2], [1, 4], [3]]
    assert shape_key({"prefix": wide, "suffix_ids": [[1], [2, 3]]}) == ("prefix", shape_key(wide))


@pytest.mark.parametrize("value", [0, -2, 2.5, "8"])
def test_fixed_shapes_refuses_what_is_not_a_number_of_rows(value):
    with pytest.raises(VcriticError, match="not a number of rows"):
        FixedShapes.of(value)


@pytest.mark.slow
def test_cli_reproducible_scores_do_not_move_with_batch_size_workers_or_resume(tiny_models, files, tmp_path):
    model = str(tiny_models("qwen2_5_vl"))
    runner = CliRunner()

    def score(*args):
        result = runner.invoke(app, ["score", *args, "--model", model, "--device", "cpu", "--tasks", "all",
                                     "--reproducible"])  # fmt: skip
        assert result.exit_code == 0, result.output
        return result

    one = score(*files, "-b", "1", "--workers", "0")
    assert "batch size 1, fixed shapes of 8 rows" in one.stderr
    many = score(*files[::-1], "-b", "17", "--workers", "2")  # worker processes group the batches
    rows = one.stdout.splitlines()
    assert rows[0] == many.stdout.splitlines()[0] and sorted(rows[1:]) == sorted(many.stdout.splitlines()[1:])
    out = tmp_path / "scores.csv"
    score(*files[:5], "-b", "3", "--workers", "0", "-o", str(out))
    score(*files, "-b", "8", "--workers", "0", "-o", str(out), "--resume")
    assert out.read_text().splitlines() == rows


def test_cli_compare_rank_and_bench_take_reproducible(tiny_models, files, tmp_path):
    model = str(tiny_models("llava"))
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("a,b\n" + "".join(f"{files[i]},{files[i + 1]}\n" for i in range(5)))
    runner = CliRunner()
    common = ["--model", model, "--device", "cpu", "--reproducible", "--workers", "0"]
    compared = [runner.invoke(app, ["compare", "--pairs", str(pairs), "-b", size, *common]) for size in ("1", "4")]
    assert all(result.exit_code == 0 for result in compared), compared[0].output
    assert compared[0].stdout == compared[1].stdout
    assert "fixed shapes of 8 rows" in compared[0].stderr
    ranked = runner.invoke(app, ["rank", *files[:4], *common])
    assert ranked.exit_code == 0, ranked.output
    assert "fixed shapes of 8 rows" in ranked.stderr
    manifest = tmp_path / "mine.csv"
    manifest.write_text("path,mos\n" + "".join(f"{path},{10 * i}\n" for i, path in enumerate(files[:6])))
    benched = [runner.invoke(app, ["bench", str(manifest), "--split", "all", "--json", "-b", size, *common])
               for size in ("1", "5")]  # fmt: skip
    assert all(result.exit_code == 0 for result in benched), benched[0].output
    assert benched[0].stdout == benched[1].stdout
    assert "fixed shapes of 8 rows" in benched[0].stderr
