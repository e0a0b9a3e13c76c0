"""``vcritic calibrate`` then ``score --calibration`` on a tiny model, through the CLI and the Python API."""

from __future__ import annotations

import json

import pytest
from support.cli_output import read_csv, run_main
from typer.testing import CliRunner

from vcritic.cli.app import app
from vcritic.errors import VcriticError
from vcritic.evaluation.calibration import Calibration, ModelId, TargetScale

KONIQ = TargetScale("KonIQ-10k MOS", 1.0, 5.0)
SOMEONE = ModelId("org/critic", "a" * 40)


@pytest.mark.slow
def test_calibrate_then_score_with_the_calibration(tmp_path, tiny_llava, monkeypatch, capsys):
    """bench fixture -> score -> calibrate -> score --calibration -> bench --predictions, all through the CLI."""
    from support.dataset_fixtures import make_koniq10k

    from vcritic.inference.loading import load_critic

    monkeypatch.chdir(tmp_path)
    fixture = make_koniq10k(tmp_path / "data", n=24)
    images = fixture.folder / "1024x768"
    runner = CliRunner()
    plain = runner.invoke(app, ["score", str(images), "-m", str(tiny_llava), "-o", "plain.csv"])
    assert plain.exit_code == 0, plain.output

    # Fitted from the predictions; the model is only named.
    result = runner.invoke(app, ["calibrate", "-p", "plain.csv", "-d", "koniq10k", "--root", str(tmp_path / "data"),
                                 "-m", str(tiny_llava), "-o", "cal.json"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "KonIQ-10k MOS (1-5)" in result.output and "held out" in result.output
    assert "only 24 labelled images" in result.output  # the small-n warning
    calibration = Calibration.load(tmp_path / "cal.json")
    assert calibration.n == 24 and calibration.dataset == "koniq10k"
    assert calibration.model == ModelId(str(tiny_llava.resolve()))

    # Fitted by scoring the dataset with the model: the same images, scores and model. (Not the same parameters to
    # the digit: the CSV rounds scores to 4 decimals, and a random model's nearly equal scores make the fit steep.)
    scored = runner.invoke(app, ["calibrate", "-d", "koniq10k", "--root", str(tmp_path / "data"), "-m",
                                 str(tiny_llava), "-o", "cal2.json"])  # fmt: skip
    assert scored.exit_code == 0, scored.output
    direct = Calibration.load(tmp_path / "cal2.json")
    assert (direct.n, direct.model, direct.target) == (24, calibration.model, calibration.target)
    assert direct.metrics["srcc"] == pytest.approx(calibration.metrics["srcc"], abs=0.02)

    result = runner.invoke(app, ["score", str(images), "-m", str(tiny_llava), "--calibration", "cal.json",
                                 "-o", "calibrated.csv"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "KonIQ-10k MOS (1-5) mean" in result.output
    rows = read_csv((tmp_path / "calibrated.csv").read_text())
    assert list(rows[0]) == ["path", "mos", "mos_std", "mos_calibrated", "calibrated_scale", "scale", "error"]
    for row in rows:
        assert row["calibrated_scale"] == "KonIQ-10k MOS (1-5)" and row["scale"] == "0-100"
        # The CSV rounds mos to 4 decimals and the map is monotonic (steep for a random model's nearly equal
        # scores): the calibrated value of the unrounded score lies between the maps of the rounding interval.
        ends = [calibration.apply(float(row["mos"]) + half) for half in (-5e-5, 5e-5)]
        assert min(ends) - 1e-4 <= float(row["mos_calibrated"]) <= max(ends) + 1e-4, (row, ends)
        assert 1.0 <= float(row["mos_calibrated"]) <= 5.0

    # bench --predictions reads the calibrated CSV as it reads the plain one.
    metrics = []
    for name in ("plain.csv", "calibrated.csv"):
        bench = runner.invoke(app, ["bench", "koniq10k", "--root", str(tmp_path / "data"), "--predictions", name,
                                    "--split", "all", "--pairs", "0", "--json"])  # fmt: skip
        assert bench.exit_code == 0, bench.output
        metrics.append(json.loads(bench.stdout)["mos"])
    assert metrics[0] == metrics[1] and metrics[0]["srcc"] is not None

    # --resume with another calibration is refused; with the same one it goes on.
    other = Calibration("isotonic", {"x": [0.0, 100.0], "y": [1.0, 5.0]}, KONIQ, calibration.model, "d", 5)
    other.save(tmp_path / "other.json")
    code, err = run_main(["score", images, "-m", tiny_llava, "--calibration", "other.json", "-o", "calibrated.csv",
                       "--resume"], capsys)  # fmt: skip
    assert code == 1 and "calibrated otherwise" in err

    # Another model: refused before loading, naming both; forced, a warning.
    theirs = Calibration("isotonic", {"x": [0.0, 100.0], "y": [1.0, 5.0]}, KONIQ, SOMEONE, "d", 5)
    theirs.save(tmp_path / "theirs.json")
    code, err = run_main(["score", images, "-m", tiny_llava, "--calibration", "theirs.json"], capsys)
    assert code == 1 and "fitted for org/critic @ aaaaaaaaaaaa, not for" in err and str(tiny_llava.name) in err
    assert "Loading" not in err  # refused before the model loads
    forced = runner.invoke(app, ["score", str(images), "-m", str(tiny_llava), "--calibration", "theirs.json",
                                 "--force-calibration-model", "-o", "forced.csv"])  # fmt: skip
    assert forced.exit_code == 0 and "applied anyway" in forced.output
    code, err = run_main(["score", images, "-m", tiny_llava, "--calibration", "cal.json", "-t", "authenticity"], capsys)
    assert code == 2 and "--tasks leaves it out" in err

    # The Python API: the same check and map.
    critic = load_critic(str(tiny_llava))
    assert calibration.check(critic) is None
    with pytest.raises(VcriticError, match="force=True"):
        theirs.check(critic)
    score = critic.score(str(images / rows[0]["path"].rsplit("/", 1)[-1]))
    assert calibration.apply(score) == pytest.approx(float(rows[0]["mos_calibrated"]), abs=1e-3)
