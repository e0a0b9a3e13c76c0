"""``--calibration`` for the commands that score (``score``, ``serve``): the file checked before any work, the model
checked once it has loaded."""

from __future__ import annotations

from pathlib import Path

from vcritic.inference.model_spec import ModelSpec


def read_calibration(path: Path | None, tasks, model, spec: ModelSpec, force: bool):
    """The --calibration file, checked before any work: readable, for MOS, and (unless forced) fitted for --model
    by name; the commit is checked once loading has found it (:func:`check_calibration_model`)."""
    if path is None:
        return None
    from vcritic.errors import UsageError
    from vcritic.evaluation.calibration import Calibration, model_identity

    if "mos" not in tasks:
        raise UsageError("--calibration maps the MOS, but --tasks leaves it out", hint="add mos to --tasks")
    calibration = Calibration.load(path)
    if not force:
        calibration.check_model(model_identity(model, spec.revision, spec.adapter))
    return calibration


def check_calibration_model(calibration, critic, revision, adapter, force: bool) -> None:
    """Refuse (or, forced, warn once) when the loaded model is not the one the calibration was fitted for."""
    from vcritic.evaluation.calibration import model_identity

    warning = calibration.check_model(
        model_identity(critic.source, revision, adapter, commit=critic.loaded.revision), force=force
    )
    if warning:
        from vcritic.cli._output import stderr

        stderr.print(f"Warning: {warning}", style="yellow", markup=False)
