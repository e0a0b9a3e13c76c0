"""Calibration: one monotonic map from vcritic's MOS (0-100) to a dataset's own scale (KonIQ's 1-5, a team's 0-10).

The map is the VQEG 4-parameter logistic that ``bench`` fits for PLCC (:func:`vcritic.evaluation.metrics.fit_logistic`);
where
that fit fails or comes out decreasing, isotonic regression (always non-decreasing) is used instead, and the file
says so. A map that never decreases keeps every ranking, so SRCC is unchanged; what it changes is where a score
lands on the target scale, which RMSE measures. Held-out figures come from k-fold cross-validation (each image
predicted by a map fitted without it), so a user sees whether the map generalises beyond the images it was fitted on.

A calibration is saved as plain JSON (``calibration.json``, :meth:`Calibration.save`), never pickle::

    {"format": 1, "kind": "logistic4", "parameters": {"b1": 4.6, "b2": 1.2, "b3": 55.0, "b4": 9.1},
     "fallback": null, "source_scale": "vcritic MOS 0-100",
     "target": {"name": "KonIQ-10k MOS", "low": 1.0, "high": 5.0, "range": "documented", "clip": true},
     "model": {"name": "Qwen/Qwen2.5-VL-7B-Instruct", "revision": "cc59...", "adapter": null},
     "dataset": "koniq10k", "n": 2015, "metrics": {...}, "warnings": [], "vcritic_version": "0.1.0"}

``kind`` is ``logistic4`` (``parameters`` b1-b4 of :func:`vcritic.evaluation.metrics.logistic4`) or ``isotonic``
(``parameters`` ``x`` and ``y``: knots on the 0-100 scale and their values, linearly interpolated, flat beyond the
ends). From Python: ``Calibration.load(path)``, then ``.check(critic)`` and ``.apply(score)``.
"""

from __future__ import annotations

import json
import math
import numbers
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vcritic.errors import VcriticError
from vcritic.evaluation.metrics import finite_or_none, fit_logistic, logistic4, plcc, srcc

FORMAT = 1
KINDS = ("logistic4", "isotonic")
SOURCE_SCALE = "vcritic MOS 0-100"
MIN_IMAGES = 5  # fewer labelled images than this fit nothing worth saving
FEW_IMAGES = 50  # below this the held-out figures swing from one seed to the next
FLAT_SD = 1.0  # MOS points: scores this close together make any map steep and its held-out figures poor
DEFAULT_FOLDS = 5
WRITE_AGAIN = "write it again with: vcritic calibrate ... -o FILE"
_COMMIT = re.compile(r"^[0-9a-f]{40}$")


@dataclass(frozen=True)
class TargetScale:
    """The scale a calibration maps onto: its name and range. ``clip`` keeps values inside a documented range."""

    name: str
    low: float
    high: float
    range: str = "documented"  # or "observed": the lowest and highest label seen, not limits of the scale
    clip: bool = True

    @property
    def label(self) -> str:
        return f"{self.name} ({self.low:g}-{self.high:g})"


@dataclass(frozen=True)
class ModelId:
    """Which model a calibration is for: a hub repo id (a preset by its repo) or a local folder's absolute path,
    the commit where known, and the adapter folder applied on top, if any."""

    name: str
    revision: str | None = None
    adapter: str | None = None

    def __str__(self) -> str:
        text = self.name + (f" @ {self.revision[:12]}" if self.revision else "")
        return text + (f" + adapter {self.adapter}" if self.adapter else "")

    def differs_from(self, other: ModelId) -> bool:
        """Another model: another name or adapter, or another commit where both commits are known."""
        if _model_key(self.name) != _model_key(other.name) or self.adapter != other.adapter:
            return True
        return self.revision is not None and other.revision is not None and self.revision != other.revision


def _model_key(name: str) -> str:
    return name if name.startswith("/") else name.lower()  # hub repo ids are case-insensitive, paths are not


def model_identity(
    name: str, revision: str | None = None, adapter: str | os.PathLike | None = None, *, commit: str | None = None
) -> ModelId:
    """The :class:`ModelId` of ``--model NAME [--revision R] [--adapter DIR]``, from the local disk only.

    A preset stands for its repo at its pinned commit; a repo id's branch is resolved through the local cache where
    the model is there; ``commit`` (what loading found) wins over both. A folder is named by its absolute path."""
    from vcritic.model.hub import cached_snapshot, hub_target

    adapter_name = str(Path(adapter).expanduser().resolve()) if adapter is not None else None
    path = Path(name).expanduser()
    if path.is_dir():
        return ModelId(str(path.resolve()), None, adapter_name)
    target = hub_target(name, revision)
    if commit is None and _COMMIT.match(target.revision):
        commit = target.revision  # a preset's pin, or a commit given with --revision
    if commit is None:
        snapshot = cached_snapshot(target.repo, target.revision)
        commit = snapshot.name if snapshot is not None else None  # the hub cache names snapshots by commit
    return ModelId(target.repo, commit if commit and _COMMIT.match(commit) else None, adapter_name)


# -- the maps ---------------------------------------------------------------------------------------------------
def _isotonic(x: np.ndarray, y: np.ndarray) -> dict[str, list[float]]:
    """Knots of the least-squares non-decreasing fit of y on x (tied x averaged first); only the ends of each flat
    block are kept, so the file stays small whatever n is."""
    from scipy.optimize import isotonic_regression

    xs, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    means = np.bincount(inverse, weights=y) / counts
    fitted = isotonic_regression(means, weights=counts, increasing=True).x
    keep = np.ones(len(xs), dtype=bool)
    if len(xs) > 2:
        same_before = np.r_[False, fitted[1:] == fitted[:-1]]
        same_after = np.r_[fitted[:-1] == fitted[1:], False]
        keep = ~(same_before & same_after)
    return {"x": [float(v) for v in xs[keep]], "y": [float(v) for v in fitted[keep]]}


def fit_map(x: Sequence[float], y: Sequence[float], kind: str = "logistic4") -> tuple[str, dict, str | None]:
    """``(kind used, parameters, why the fallback was used or None)``: the logistic where its fit succeeds and
    increases, else the isotonic fit."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    reason = None
    if kind == "logistic4":
        params = fit_logistic(x, y)
        if params is None:
            reason = "the 4-parameter logistic fit did not converge (or had too few distinct points)"
        elif params[0] <= params[1]:
            reason = "the fitted 4-parameter logistic decreases (the scores run against the target)"
        else:
            return "logistic4", dict(zip(("b1", "b2", "b3", "b4"), params, strict=True)), None
    elif kind != "isotonic":
        raise VcriticError(f"unknown calibration kind {kind!r}", hint=f"use one of {', '.join(KINDS)}")
    return "isotonic", _isotonic(x, y), reason


def apply_map(kind: str, parameters: dict, x) -> np.ndarray:
    """The map of ``kind`` with ``parameters`` at ``x`` (an array)."""
    x = np.asarray(x, dtype=float)
    if kind == "logistic4":
        return logistic4(x, parameters["b1"], parameters["b2"], parameters["b3"], parameters["b4"])
    return np.interp(x, parameters["x"], parameters["y"])


# -- fitting and evaluating ---------------------------------------------------------------------------------------
def rmse(pred: Sequence[float], true: Sequence[float]) -> float:
    pred, true = np.asarray(pred, dtype=float), np.asarray(true, dtype=float)
    return float(np.sqrt(np.mean((pred - true) ** 2))) if len(pred) else float("nan")


def linear_to_scale(mos, target: TargetScale) -> np.ndarray:
    """The uncalibrated reading: 0-100 stretched linearly onto the target's range (the "before" figures)."""
    return target.low + np.asarray(mos, dtype=float) / 100.0 * (target.high - target.low)


def cross_validate(x: np.ndarray, y: np.ndarray, kind: str, folds: int, seed: int) -> tuple[np.ndarray, dict]:
    """Out-of-fold predictions (each point mapped by a fit that did not see it) and how often each kind was used."""
    order = np.random.default_rng(seed).permutation(len(x))
    predicted = np.empty(len(x))
    used: dict[str, int] = {}
    for held in np.array_split(order, folds):
        train = np.setdiff1d(order, held)
        fold_kind, params, _ = fit_map(x[train], y[train], kind)
        used[fold_kind] = used.get(fold_kind, 0) + 1
        predicted[held] = apply_map(fold_kind, params, x[held])
    return predicted, used


def _scores(pred: np.ndarray, y: np.ndarray) -> dict[str, float | None]:
    # No SRCC here: a map that never decreases keeps the ranking (isotonic steps only add ties).
    return {"plcc": finite_or_none(plcc(pred, y)), "rmse": finite_or_none(rmse(pred, y))}


def warnings_for(x: np.ndarray, y: np.ndarray, folds: int) -> list[str]:
    """What a user should know before trusting the map: too few images, scores that hardly vary, a wrong sign."""
    notes = []
    if len(x) < FEW_IMAGES:
        notes.append(
            f"only {len(x)} labelled images: the map and its held-out figures are rough; {FEW_IMAGES} or "
            "more are better"
        )
    if float(np.std(x)) < FLAT_SD:
        notes.append(
            f"vcritic's scores are nearly constant (standard deviation {np.std(x):.2f} on 0-100): the map "
            "is steep there and small score changes swing the calibrated value"
        )
    rho = srcc(x, y)
    if math.isfinite(rho) and rho < 0:
        notes.append(
            f"SRCC is negative ({rho:.3f}): higher vcritic scores go with lower labels; check the target "
            "column's direction (higher must be better)"
        )
    if len(x) < 2 * folds:
        notes.append(f"{folds}-fold held-out figures on {len(x)} images: each fit sees few images")
    return notes


def calibrate(
    mos: Sequence[float],
    labels: Sequence[float],
    *,
    target: TargetScale,
    model: ModelId,
    dataset: str,
    kind: str = "logistic4",
    folds: int = DEFAULT_FOLDS,
    seed: int = 0,
) -> Calibration:
    """Fit the map from ``mos`` (0-100) to ``labels`` (on ``target``) and measure it, in-sample and held out."""
    x, y = np.asarray(mos, dtype=float), np.asarray(labels, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError("expected one label per score")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise VcriticError("a score or label is not a finite number", hint="drop or fix those rows")
    if x.size and not (x.min() >= 0.0 and x.max() <= 100.0):
        odd = x[(x < 0.0) | (x > 100.0)][0]
        raise VcriticError(f"a score ({odd:g}) lies outside vcritic's 0-100 scale", hint="pass vcritic's MOS scores")
    if y.size and not math.isfinite(float(y.max()) - float(y.min())):
        raise VcriticError("the labels span more than a float can hold", hint="check the label values")
    if len(x) < MIN_IMAGES:
        raise VcriticError(
            f"only {len(x)} labelled image(s) with a score: a calibration needs {MIN_IMAGES} or more",
            hint="score more labelled images",
        )
    if np.ptp(x) == 0:
        raise VcriticError(
            f"vcritic's scores are all {x[0]:g}: no map can tell the images apart",
            hint="is this a trained model? a random or untrained one gives the same score to all",
        )
    if np.ptp(y) == 0:
        raise VcriticError(f"every label is {y[0]:g}: there is no scale to map onto", hint="check the target column")
    folds = max(2, min(folds, len(x)))
    used_kind, params, reason = fit_map(x, y, kind)
    fitted = apply_map(used_kind, params, x)
    held_out, fold_kinds = cross_validate(x, y, kind, folds, seed)
    if target.clip:
        fitted, held_out = np.clip(fitted, target.low, target.high), np.clip(held_out, target.low, target.high)
    before = _scores(linear_to_scale(x, target), y)
    metrics = {
        "srcc": finite_or_none(srcc(x, y)),  # of the scores as they are; the map keeps their order
        "before": before,  # 0-100 stretched linearly onto the target range
        "fitted": _scores(fitted, y),  # the map fitted on all n, on the same n
        "held_out": {**_scores(held_out, y), "folds": folds, "seed": seed, "kinds": fold_kinds},
    }
    return Calibration(
        used_kind, params, target, model, dataset, len(x), metrics, reason, warnings=warnings_for(x, y, folds)
    )


# -- the file -----------------------------------------------------------------------------------------------------
@dataclass
class Calibration:
    """A fitted map from vcritic's MOS to ``target``, for ``model``. :meth:`apply` maps scores."""

    kind: str
    parameters: dict[str, Any]
    target: TargetScale
    model: ModelId
    dataset: str
    n: int
    metrics: dict[str, Any] = field(default_factory=dict)
    fallback: str | None = None  # why isotonic was used instead of the logistic, if it was
    warnings: list[str] = field(default_factory=list)
    path: Path | None = None  # where it was loaded from

    @property
    def label(self) -> str:
        """The target scale as the CSV's ``calibrated_scale`` column states it."""
        return self.target.label

    def apply(self, mos):
        """``mos`` (0-100) on the target scale: a number (or a :class:`vcritic.Score`) gives a float, a sequence a
        list; None or NaN stays None."""
        if mos is None or hasattr(mos, "mos"):
            value = None if mos is None else mos.mos
            return None if value is None or not math.isfinite(value) else float(self._map([value])[0])
        if isinstance(mos, str | bytes):
            raise TypeError(f"apply takes a score (0-100), a Score or a list of them, not {mos!r}")
        if isinstance(mos, numbers.Real):
            return float(self._map([mos])[0]) if math.isfinite(mos) else None
        return [self.apply(value) for value in mos]

    def _map(self, values) -> np.ndarray:
        mapped = apply_map(self.kind, self.parameters, values)
        return np.clip(mapped, self.target.low, self.target.high) if self.target.clip else mapped

    def check(self, critic, *, revision: str | None = None, adapter=None, force: bool = False) -> str | None:
        """Refuse (:class:`VcriticError`) when ``critic`` is another model than the one this was fitted for;
        with ``force``, return a warning instead. ``revision``/``adapter``: as given to ``load_critic``."""
        return self.check_model(model_identity(critic.source, revision, adapter), force=force, how="force=True")

    def check_model(self, model: ModelId, *, force: bool = False, how: str = "--force-calibration-model") -> str | None:
        if not self.model.differs_from(model):
            return None
        where = f" ({self.path})" if self.path else ""
        message = f"the calibration{where} was fitted for {self.model}, not for {model}"
        if force:
            return message + "; applied anyway"
        raise VcriticError(
            message, hint=f"fit one for this model with vcritic calibrate, or pass {how} to apply it anyway"
        )

    def to_dict(self) -> dict[str, Any]:
        from vcritic import __version__

        return {
            "format": FORMAT,
            "kind": self.kind,
            "parameters": self.parameters,
            "fallback": self.fallback,
            "source_scale": SOURCE_SCALE,
            "target": {
                "name": self.target.name,
                "low": self.target.low,
                "high": self.target.high,
                "range": self.target.range,
                "clip": self.target.clip,
            },
            "model": {"name": self.model.name, "revision": self.model.revision, "adapter": self.model.adapter},
            "dataset": self.dataset,
            "n": self.n,
            "metrics": self.metrics,
            "warnings": self.warnings,
            "vcritic_version": __version__,
        }

    def save(self, path: str | os.PathLike) -> Path:
        """Write the JSON file whole (:func:`vcritic.base.files.write_atomically`), so no reader sees half of it."""
        from vcritic.base.files import write_atomically

        data = (json.dumps(self.to_dict(), indent=2) + "\n").encode("utf-8")
        write_atomically(path, data, hint="choose another -o")
        return Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Calibration:
        """Read a calibration file; anything malformed is one :class:`VcriticError` naming the file and the fault."""
        path = Path(path).expanduser()
        from vcritic.base.limits import MAX_JSON_BYTES, check_input

        check_input(path, MAX_JSON_BYTES, "a calibration file")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise VcriticError(f"calibration file {path} not found", hint="write one with: vcritic calibrate") from None
        except (OSError, UnicodeDecodeError) as err:
            reason = getattr(err, "strerror", None) or "not UTF-8 text"
            raise VcriticError(f"cannot read calibration file {path}: {reason}", hint=WRITE_AGAIN) from None
        except json.JSONDecodeError as err:
            raise VcriticError(
                f"{path} is not a calibration file: not valid JSON ({err.msg}, line {err.lineno})", hint=WRITE_AGAIN
            ) from None
        except RecursionError:
            raise VcriticError(f"{path} is not a calibration file: nested too deeply", hint=WRITE_AGAIN) from None
        try:
            calibration = cls._from_dict(data)
        except _Malformed as err:
            raise VcriticError(f"{path} is not a usable calibration file: {err}", hint=WRITE_AGAIN) from None
        calibration.path = path
        return calibration

    @classmethod
    def _from_dict(cls, data: Any) -> Calibration:
        if not isinstance(data, dict):
            raise _Malformed("the JSON is not an object")
        if data.get("format") != FORMAT:
            raise _Malformed(f"format {data.get('format')!r} (this vcritic reads format {FORMAT})")
        kind = data.get("kind")
        if kind not in KINDS:
            raise _Malformed(f"kind {kind!r} is not one of {', '.join(KINDS)}")
        parameters = _parameters(kind, _get(data, "parameters", dict))
        target = _get(data, "target", dict)
        low, high = _number(target, "low", "target"), _number(target, "high", "target")
        if not high > low:
            raise _Malformed(f"target range {low:g}-{high:g} is empty")
        scale = TargetScale(
            _get(target, "name", str, "target"),
            low,
            high,
            str(target.get("range", "documented")),
            bool(target.get("clip", True)),
        )
        model = _get(data, "model", dict)
        revision, adapter = model.get("revision"), model.get("adapter")
        if not isinstance(revision, str | None) or not isinstance(adapter, str | None):
            raise _Malformed("model revision and adapter must be text or null")
        n = data.get("n")
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise _Malformed(f"n is {n!r}, not a positive whole number")
        return cls(
            kind,
            parameters,
            scale,
            ModelId(_get(model, "name", str, "model"), revision, adapter),
            str(data.get("dataset", "")),
            n,
            data.get("metrics") if isinstance(data.get("metrics"), dict) else {},
            data.get("fallback") if isinstance(data.get("fallback"), str) else None,
            [w for w in data.get("warnings") or [] if isinstance(w, str)],
        )


class _Malformed(Exception):
    """What is wrong inside a calibration file (turned into one VcriticError naming the file)."""


def _get(data: dict, key: str, kind: type, within: str | None = None):
    value = data.get(key)
    if not isinstance(value, kind) or (kind is str and not value.strip()):
        name = f"{within}.{key}" if within else key
        raise _Malformed(f"'{name}' is missing or not {'an object' if kind is dict else 'text'}")
    return value


def _number(data: dict, key: str, within: str) -> float:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _Malformed(f"'{within}.{key}' is {value!r}, not a finite number")
    return float(value)


def _parameters(kind: str, parameters: dict) -> dict[str, Any]:
    if kind == "logistic4":
        values = {name: _number(parameters, name, "parameters") for name in ("b1", "b2", "b3", "b4")}
        if values["b4"] == 0:
            raise _Malformed("parameter b4 (the logistic's width) is 0")
        return values
    xs, ys = parameters.get("x"), parameters.get("y")
    ok = isinstance(xs, list) and isinstance(ys, list) and len(xs) == len(ys) >= 1
    if not ok or not all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in xs + ys):
        raise _Malformed("isotonic parameters need lists x and y of finite numbers, of the same length")
    if any(b <= a for a, b in zip(xs, xs[1:], strict=False)) or any(b < a for a, b in zip(ys, ys[1:], strict=False)):
        raise _Malformed("isotonic knots must have increasing x and non-decreasing y")
    return {"x": [float(v) for v in xs], "y": [float(v) for v in ys]}
