"""Calibration: the fit, its held-out figures, the JSON file, and `calibrate` without a model (with one:
tests/e2e/test_calibration_cli.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from support.cli_output import run_main
from typer.testing import CliRunner

from vcritic.cli.app import app, main
from vcritic.errors import VcriticError
from vcritic.evaluation.calibration import (
    Calibration,
    ModelId,
    TargetScale,
    apply_map,
    calibrate,
    cross_validate,
    fit_map,
    model_identity,
)

KONIQ = TargetScale("KonIQ-10k MOS", 1.0, 5.0)
SOMEONE = ModelId("org/critic", "a" * 40)


def known_map(x):
    """A monotonic map onto 1-5 that is a 4-parameter logistic: b1=4.6, b2=1.2, b3=55, b4=9."""
    return 1.2 + 3.4 / (1.0 + np.exp(-(np.asarray(x) - 55.0) / 9.0))


def synthetic(n=400, noise=0.05, seed=1):
    rng = np.random.default_rng(seed)
    x = rng.uniform(5, 95, n)
    return x, known_map(x) + rng.normal(0, noise, n)


# -- the fit --------------------------------------------------------------------------------------------------------
def test_fit_recovers_a_known_logistic_map():
    x, y = synthetic()
    calibration = calibrate(x, y, target=KONIQ, model=SOMEONE, dataset="synthetic")
    assert calibration.kind == "logistic4" and calibration.fallback is None
    p = calibration.parameters
    assert p["b1"] == pytest.approx(4.6, abs=0.05) and p["b2"] == pytest.approx(1.2, abs=0.05)
    assert p["b3"] == pytest.approx(55.0, abs=0.5) and abs(p["b4"]) == pytest.approx(9.0, abs=0.5)
    grid = np.linspace(0, 100, 101)
    assert np.max(np.abs(np.array(calibration.apply(list(grid))) - known_map(grid))) < 0.02
    fitted, before = calibration.metrics["fitted"], calibration.metrics["before"]
    assert fitted["rmse"] == pytest.approx(0.05, abs=0.01)  # down to the noise
    assert before["rmse"] > 0.5 and fitted["plcc"] > before["plcc"]


def test_isotonic_recovers_a_monotonic_map_that_is_no_logistic():
    rng = np.random.default_rng(2)
    x = rng.uniform(0, 100, 600)
    truth = lambda v: np.where(np.asarray(v) < 40, 0.05 * np.asarray(v), 2 + ((np.asarray(v) - 40) / 60) ** 2 * 8)  # noqa: E731
    calibration = calibrate(x, truth(x) + rng.normal(0, 0.1, 600), target=TargetScale("raters", 0, 10),
                            model=SOMEONE, dataset="synthetic", kind="isotonic")  # fmt: skip
    grid = np.linspace(2, 98, 97)
    mapped = np.array(calibration.apply(list(grid)))
    assert np.all(np.diff(mapped) >= 0)
    assert np.max(np.abs(mapped - truth(grid))) < 0.3
    assert len(calibration.parameters["x"]) < 300  # flat blocks kept by their ends only


def test_decreasing_fit_falls_back_to_isotonic_and_warns():
    x, y = synthetic()
    calibration = calibrate(x, 6.0 - y, target=KONIQ, model=SOMEONE, dataset="synthetic")
    assert calibration.kind == "isotonic" and "decreases" in calibration.fallback
    assert np.all(np.diff(calibration.parameters["y"]) >= 0)
    assert any("SRCC is negative" in w for w in calibration.warnings)


def test_logistic_that_does_not_converge_falls_back(monkeypatch):
    import vcritic.evaluation.calibration as module

    monkeypatch.setattr(module, "fit_logistic", lambda x, y: None)  # what metrics.fit_logistic returns on failure
    kind, params, reason = fit_map(*synthetic())
    assert kind == "isotonic" and "did not converge" in reason and set(params) == {"x", "y"}


def test_held_out_predictions_come_from_fits_without_the_point():
    x, y = synthetic(n=12, noise=0.3)
    predicted, used = cross_validate(x, y, "isotonic", folds=12, seed=0)  # leave one out
    assert used == {"isotonic": 12}
    for i in range(12):
        others = np.arange(12) != i
        kind, params, _ = fit_map(x[others], y[others], "isotonic")
        assert predicted[i] == pytest.approx(apply_map(kind, params, [x[i]])[0])


def test_held_out_figures_expose_a_map_that_does_not_generalise():
    rng = np.random.default_rng(3)
    x = rng.uniform(0, 100, 200)
    noise = calibrate(x, rng.uniform(1, 5, 200), target=KONIQ, model=SOMEONE, dataset="noise", kind="isotonic")
    held, fitted = noise.metrics["held_out"], noise.metrics["fitted"]
    assert held["rmse"] > fitted["rmse"] and held["plcc"] < fitted["plcc"] - 0.1
    x, y = synthetic()
    good = calibrate(x, y, target=KONIQ, model=SOMEONE, dataset="synthetic", folds=4, seed=7)
    assert good.metrics["held_out"]["rmse"] == pytest.approx(good.metrics["fitted"]["rmse"], rel=0.1)
    assert good.metrics["held_out"]["folds"] == 4 and good.metrics["held_out"]["kinds"] == {"logistic4": 4}
    again = calibrate(x, y, target=KONIQ, model=SOMEONE, dataset="synthetic", folds=4, seed=7)
    other = calibrate(x, y, target=KONIQ, model=SOMEONE, dataset="synthetic", folds=4, seed=8)
    assert again.metrics == good.metrics and other.metrics["held_out"] != good.metrics["held_out"]


def test_refusals_and_warnings_for_thin_data():
    x, y = synthetic(n=30)
    with pytest.raises(VcriticError, match="only 4 labelled"):
        calibrate(x[:4], y[:4], target=KONIQ, model=SOMEONE, dataset="d")
    with pytest.raises(VcriticError, match="all 50"):
        calibrate(np.full(30, 50.0), y, target=KONIQ, model=SOMEONE, dataset="d")
    with pytest.raises(VcriticError, match="every label is 3"):
        calibrate(x, np.full(30, 3.0), target=KONIQ, model=SOMEONE, dataset="d")
    flat = calibrate(50 + x / 1000, y, target=KONIQ, model=SOMEONE, dataset="d")
    assert any("only 30 labelled" in w for w in flat.warnings)
    assert any("nearly constant" in w for w in flat.warnings)
    assert not calibrate(*synthetic(), target=KONIQ, model=SOMEONE, dataset="d").warnings


def test_apply_takes_numbers_scores_and_lists_and_clips_to_a_documented_range():
    from vcritic.readout.results import Score

    calibration = Calibration("logistic4", {"b1": 6.0, "b2": 0.0, "b3": 50.0, "b4": 10.0}, KONIQ, SOMEONE, "d", 10)
    assert calibration.apply(50.0) == pytest.approx(3.0)
    assert calibration.apply(np.float32(50.0)) == pytest.approx(3.0)
    assert calibration.apply(100.0) == 5.0 and calibration.apply(0.0) == 1.0  # the logistic runs past 1-5
    assert calibration.apply(Score(mos=50.0)) == pytest.approx(3.0) and calibration.apply(Score()) is None
    assert calibration.apply([50.0, None, float("nan")]) == [pytest.approx(3.0), None, None]
    observed = Calibration("logistic4", calibration.parameters, TargetScale("r", 1, 5, "observed", clip=False),
                           SOMEONE, "d", 10)  # fmt: skip
    assert observed.apply(100.0) > 5.0


# -- the file -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["logistic4", "isotonic"])
def test_json_round_trip(tmp_path, kind):
    x, y = synthetic(n=100)
    fitted = calibrate(x, y, target=KONIQ, model=SOMEONE, dataset="koniq10k", kind=kind)
    path = fitted.save(tmp_path / "calibration.json")
    data = json.loads(path.read_text())
    assert data["kind"] == kind and data["target"] == {"name": "KonIQ-10k MOS", "low": 1.0, "high": 5.0,
                                                         "range": "documented", "clip": True}  # fmt: skip
    assert data["model"] == {"name": "org/critic", "revision": "a" * 40, "adapter": None}
    assert data["n"] == 100 and data["dataset"] == "koniq10k" and "held_out" in data["metrics"]
    loaded = Calibration.load(path)
    assert loaded.to_dict() == fitted.to_dict() and loaded.path == path
    grid = list(np.linspace(0, 100, 51))
    assert loaded.apply(grid) == fitted.apply(grid)
    assert not list(tmp_path.glob(".*"))  # the temporary file was renamed over the target


def _good(tmp_path) -> dict:
    x, y = synthetic(n=50)
    return calibrate(x, y, target=KONIQ, model=SOMEONE, dataset="d").to_dict()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: "not json {", "not valid JSON"),
        (lambda d: [1, 2], "not an object"),
        (lambda d: {**d, "format": 2}, "format 2"),
        (lambda d: {**d, "kind": "spline"}, "kind 'spline'"),
        (lambda d: {**d, "parameters": {"b1": 1, "b2": 2, "b3": 3}}, "parameters.b4"),
        (lambda d: {**d, "parameters": {"b1": 1, "b2": 2, "b3": 3, "b4": "x"}}, "parameters.b4"),
        (lambda d: {**d, "kind": "isotonic", "parameters": {"x": [1, 2], "y": [3, 2]}}, "non-decreasing"),
        (lambda d: {**d, "kind": "isotonic", "parameters": {"x": [1, 2], "y": [3]}}, "same length"),
        (lambda d: {**d, "target": {**d["target"], "low": 5}}, "empty"),
        (lambda d: {**d, "model": {}}, "model.name"),
        (lambda d: {**d, "n": 0}, "n is 0"),
    ],
    ids=[
        "json",
        "array",
        "format",
        "kind",
        "b4-missing",
        "b4-text",
        "isotonic-down",
        "isotonic-lengths",
        "empty-range",
        "no-model",
        "n",
    ],  # fmt: skip
)
def test_malformed_files_are_one_line_errors(tmp_path, change, message, capsys):
    changed = change(_good(tmp_path))
    path = tmp_path / "calibration.json"
    path.write_text(changed if isinstance(changed, str) else json.dumps(changed).replace("NaN", "null"))
    with pytest.raises(VcriticError, match=message) as caught:
        Calibration.load(path)
    assert str(path) in caught.value.message and "\n" not in caught.value.message
    assert main(["score", str(tmp_path), "--calibration", str(path)]) == 1
    err = capsys.readouterr().err
    assert message.split()[0] in err and len(err.strip().splitlines()) == 2 and "Traceback" not in err


def test_missing_and_unreadable_files(tmp_path):
    with pytest.raises(VcriticError, match="not found"):
        Calibration.load(tmp_path / "nothing.json")
    (tmp_path / "binary.json").write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(VcriticError, match="cannot read"):
        Calibration.load(tmp_path / "binary.json")
    with pytest.raises(VcriticError, match="cannot read"):
        Calibration.load(tmp_path)  # a folder
    calibration = Calibration("isotonic", {"x": [0.0, 100.0], "y": [1.0, 5.0]}, KONIQ, SOMEONE, "d", 5)
    with pytest.raises(VcriticError, match="cannot write"):
        calibration.save(tmp_path / "no-such-folder" / "calibration.json")
    with pytest.raises(TypeError):
        calibration.apply("63.2")


# -- which model --------------------------------------------------------------------------------------------------
def test_model_identity_and_mismatch(tmp_path):
    from vcritic.model.presets import get_preset

    preset = get_preset("qwen2.5-vl-7b")
    assert model_identity("qwen2.5-vl-7b") == ModelId(preset.repo, preset.revision)
    assert not model_identity("qwen/qwen2.5-vl-7b-instruct").differs_from(model_identity("qwen2.5-vl-7b"))
    assert model_identity("org/name").revision is None  # not in the cache: the commit is unknown
    folder = tmp_path / "run"
    folder.mkdir()
    assert model_identity(str(folder)).name == str(folder.resolve())
    assert model_identity(str(folder), adapter=tmp_path).differs_from(model_identity(str(folder)))
    assert ModelId("org/name", "a" * 40).differs_from(ModelId("org/name", "b" * 40))
    assert not ModelId("org/name", "a" * 40).differs_from(ModelId("org/name", None))

    calibration = Calibration("isotonic", {"x": [0.0, 100.0], "y": [1.0, 5.0]}, KONIQ, model_identity(str(folder)),
                              "d", 5)  # fmt: skip
    with pytest.raises(VcriticError, match=r"fitted for .*run, not for Qwen/Qwen2.5-VL-7B-Instruct") as caught:
        calibration.check_model(model_identity("qwen2.5-vl-7b"))
    assert "--force-calibration-model" in caught.value.hint
    warning = calibration.check_model(model_identity("qwen2.5-vl-7b"), force=True)
    assert "applied anyway" in warning and "Qwen2.5-VL-7B" in warning
    assert calibration.check_model(model_identity(str(folder))) is None


# -- the command line -----------------------------------------------------------------------------------------------
def test_calibrate_a_target_column(tmp_path, capsys):
    """A generic CSV: vcritic's mos and the team's own 0-10 ratings; no model is loaded."""
    x, y = synthetic(n=120)
    ratings = (y - 1.0) / 4.0 * 10.0  # the known map, on 0-10
    path = tmp_path / "ratings.csv"
    lines = ["path,mos,mos_std,scale,error,rating"]
    lines += [f"img{i}.png,{m:.4f},10,0-100,,{r:.4f}" for i, (m, r) in enumerate(zip(x, ratings, strict=True))]
    lines += ["broken.png,,,0-100,not an image,5", "unrated.png,50,10,0-100,,"]
    path.write_text("\n".join(lines) + "\n")
    model = tmp_path / "my-critic"
    model.mkdir()
    out = tmp_path / "cal.json"
    args = ["calibrate", "-p", str(path), "--target", "rating", "--target-range", "0-10", "--target-name",
            "our raters", "-m", str(model), "-o", str(out)]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "our raters (0-10)" in result.output and "PLCC" in result.output and "RMSE (0-10)" in result.output
    assert "2 row(s) without a score or a rating value" in result.output
    calibration = Calibration.load(out)
    assert calibration.n == 120 and calibration.dataset == "ratings.csv" and calibration.kind == "logistic4"
    assert calibration.model == ModelId(str(model.resolve()))
    assert calibration.apply(55.0) == pytest.approx((known_map(55.0) - 1) / 4 * 10, abs=0.1)
    code, err = run_main(args, capsys)
    assert code == 1 and "already exists" in err
    stdout = CliRunner().invoke(app, [*args[:-2], "-o", "-"])
    assert json.loads(stdout.stdout)["n"] == 120


def test_calibrate_a_manifest_on_its_own_scale(tmp_path, capsys):
    """--dataset MANIFEST --mos-range 1-5: labels are read back on 1-5 (records hold them on 0-100)."""
    x, y = synthetic(n=60, noise=0.0)
    manifest, scores = tmp_path / "mine.csv", tmp_path / "scores.csv"
    manifest.write_text("path,mos\n" + "".join(f"img{i}.png,{v:.6f}\n" for i, v in enumerate(y)))
    scores.write_text("path,mos,mos_std,scale,error\n" + "".join(f"img{i}.png,{v:.6f},1,0-100,\n"
                                                                  for i, v in enumerate(x)))  # fmt: skip
    out = tmp_path / "cal.json"
    args = ["calibrate", "-p", scores, "-d", manifest, "--mos-range", "1-5", "-m", tmp_path, "-o", out]
    assert run_main(args, capsys)[0] == 0
    calibration = Calibration.load(out)
    assert calibration.target == TargetScale("mine MOS", 1.0, 5.0) and calibration.n == 60
    assert calibration.apply(55.0) == pytest.approx(known_map(55.0), abs=1e-3)
    assert run_main([*args[:-1], tmp_path / "test.json", "--split", "test"], capsys)[0] == 0
    assert Calibration.load(tmp_path / "test.json").n == 12  # the seeded 20% of 60


def test_dataset_problems_show_before_a_model_loads(tmp_path, capsys):
    from support.dataset_fixtures import make_koniq10k

    fixture = make_koniq10k(tmp_path / "data", n=12)
    for image in (fixture.folder / "1024x768").iterdir():
        image.unlink()
    args = ["calibrate", "-d", "koniq10k", "--root", tmp_path / "data", "-m", "org/not-in-the-cache", "-o",
            tmp_path / "c.json"]  # fmt: skip
    code, err = run_main(args, capsys)
    assert code == 1 and "images listed in the annotation file are missing" in err and "cache" not in err
    code, err = run_main([*args[:2], "spaq", *args[3:]], capsys)
    assert code == 1 and "SPAQ not found" in err


def test_calibrate_usage_errors(tmp_path, capsys):
    scores = tmp_path / "s.csv"
    scores.write_text("path,mos,rating\na.png,50,3\n")
    cases = [
        ([], "one of --dataset NAME or --target COLUMN"),
        (["--target", "rating"], "--target names a column of the --predictions CSV"),
        (["-p", str(scores), "--target", "rating"], "--predictions needs --model"),
        (["-p", str(scores), "--target", "nope", "-m", str(tmp_path)], "no column 'nope'"),
        (["-p", str(scores), "--target", "rating", "-m", str(tmp_path)], "only 1 labelled image"),
        (["-p", str(scores), "--target", "rating", "--target-range", "4-5", "-m", str(tmp_path)], "outside"),
        (["-d", "koniq", "--kind", "spline"], "--kind 'spline'"),
    ]
    for extra, message in cases:
        code, err = run_main(["calibrate", *extra, "-o", tmp_path / "c.json"], capsys)
        assert code in (1, 2) and message in err, (extra, err)
        assert len(err.strip().splitlines()) == 2, err
