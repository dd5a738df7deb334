"""Steps as data: a :class:`Pipeline` of named steps, applied in order to a Volume.

The Python API chains calls or passes a list::

    from convert.process import Pipeline
    pipe = Pipeline().hu().reorient("RAS").resample(1.0).window("brain")
    volume = pipe(convert.load("ct.nii.gz"))
    convert.convert("dicom_dir", "ct.nii.gz", process=pipe)          # or process=[...]

The command line builds one with :func:`from_options` in the fixed order
:data:`CLI_ORDER`, whatever the order of the flags.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

from convert.errors import UnsupportedDataError
from convert.volume import Volume

#: The order ``medconvert convert`` applies its processing flags in: values first (HU), then the
#: crop (on the original grid: less to resample), axes, grid, padding, and last the value mappings
#: (window, normalisation) so interpolation and padding work on HU, not on clipped values.
CLI_ORDER: tuple[str, ...] = ("hu", "crop_to_foreground", "reorient", "resample", "pad_to", "window", "normalize")


def _function(name: str) -> Callable[..., Volume]:
    from convert.process import export, geometry, intensity, masks

    for module in (intensity, geometry, masks, export):
        fn = getattr(module, name, None)
        if callable(fn) and name in STEP_NAMES:
            return fn  # type: ignore[no-any-return]
    raise UnsupportedDataError(f"unknown processing step '{name}': use one of {', '.join(STEP_NAMES)}")


#: Step names a :class:`Step` may have (functions of the process modules, ``Volume -> Volume``).
STEP_NAMES: tuple[str, ...] = ("hu", "window", "clip", "cast", "reorient", "flip", "resample", "resample_to",
                               "crop", "crop_to_foreground", "pad_to", "apply_mask", "normalize")


@dataclass(frozen=True)
class Step:
    """One step: the name of a process function and its arguments; ``step(volume)`` applies it."""

    name: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _function(self.name)  # unknown names fail when the step is made, not at the first volume

    def __call__(self, volume: Volume) -> Volume:
        return _function(self.name)(volume, *self.args, **self.kwargs)


class Pipeline:
    """An ordered list of steps (:class:`Step` or any ``Volume -> Volume`` function), itself a step.

    Chaining methods (:meth:`hu`, :meth:`window`, ...) return a new Pipeline with one
    more step; the arguments are those of the functions in :mod:`convert.process`.
    """

    def __init__(self, steps: Iterable[Callable[[Volume], Volume]] = ()) -> None:
        self.steps: tuple[Callable[[Volume], Volume], ...] = tuple(steps)
        for s in self.steps:
            if not callable(s):
                raise TypeError(f"a processing step must be callable (Volume -> Volume), got {s!r}")

    def __call__(self, volume: Volume) -> Volume:
        for s in self.steps:
            volume = s(volume)
        return volume

    def __len__(self) -> int:
        return len(self.steps)

    def __repr__(self) -> str:
        return f"Pipeline({list(self.steps)!r})"

    def then(self, name: str, *args: Any, **kwargs: Any) -> "Pipeline":
        """This pipeline plus ``Step(name, args, kwargs)``."""
        return Pipeline(self.steps + (Step(name, args, kwargs),))

    def hu(self, **kw: Any) -> "Pipeline":
        return self.then("hu", **kw)

    def window(self, spec: Any, output: str = "hu") -> "Pipeline":
        return self.then("window", spec, output=output)

    def clip(self, low: float | None = None, high: float | None = None) -> "Pipeline":
        return self.then("clip", low, high)

    def cast(self, dtype: Any) -> "Pipeline":
        return self.then("cast", dtype)

    def reorient(self, code: str) -> "Pipeline":
        return self.then("reorient", code)

    def resample(self, spacing: Any = None, **kw: Any) -> "Pipeline":
        return self.then("resample", spacing, **kw)

    def crop_to_foreground(self, **kw: Any) -> "Pipeline":
        return self.then("crop_to_foreground", **kw)

    def pad_to(self, shape: Sequence[int], value: float | None = None) -> "Pipeline":
        return self.then("pad_to", shape, value)

    def normalize(self, method: str = "zscore", **kw: Any) -> "Pipeline":
        return self.then("normalize", method, **kw)


def as_pipeline(process: Pipeline | Sequence[Callable[[Volume], Volume]] | Callable[[Volume], Volume] | None
                ) -> Pipeline | None:
    """``process`` as a :class:`Pipeline` (None or an empty list: None)."""
    if process is None:
        return None
    if isinstance(process, Pipeline):
        return process if len(process) else None
    if callable(process):
        return Pipeline([process])
    steps = list(process)
    return Pipeline(steps) if steps else None


def from_options(*, hu: bool = False, window: str | None = None, window_output: str = "hu",
                 reorient: str | None = None, resample: Sequence[float] | None = None,
                 interpolation: str | None = None, labels: bool = False, crop_foreground: bool = False,
                 crop_margin_mm: float = 0.0, pad: Sequence[int] | None = None,
                 normalize: str | None = None) -> Pipeline | None:
    """The pipeline of ``medconvert convert``'s processing flags, in :data:`CLI_ORDER` (None if no flag).

    Arguments are checked here (window name, axis code, spacing > 0, ...), before any file is read.
    """
    from convert.geometry import check_code
    from convert.process.intensity import resolve_window
    from convert.process.steps import three_numbers

    chosen: dict[str, Step] = {}
    if hu:
        chosen["hu"] = Step("hu")
    if crop_foreground:
        chosen["crop_to_foreground"] = Step("crop_to_foreground", kwargs={"margin_mm": float(crop_margin_mm)})
    if reorient:
        chosen["reorient"] = Step("reorient", (check_code(reorient),))
    if resample is not None:
        spacing = [float(v) for v in three_numbers(resample, "--resample spacing (mm)")]
        chosen["resample"] = Step("resample", (spacing,), {"interpolation": interpolation, "labels": labels})
    elif interpolation or labels:
        raise UnsupportedDataError("--interpolation and --labels apply with --resample")
    if pad is not None:
        chosen["pad_to"] = Step("pad_to", ([int(v) for v in three_numbers(pad, "--pad shape (voxels)")],))
    if window_output not in ("hu", "unit", "uint8"):
        raise UnsupportedDataError(f"--window-output must be hu, unit or uint8, not '{window_output}'")
    if window:
        if window.strip().lower() != "dicom":
            resolve_window(window)
        chosen["window"] = Step("window", (window,), {"output": window_output})
    if normalize:
        if normalize not in ("zscore", "minmax", "percentile"):
            raise UnsupportedDataError(f"unknown --normalize '{normalize}': use zscore, minmax or percentile")
        chosen["normalize"] = Step("normalize", (normalize,))
    if not chosen:
        return None
    return Pipeline([chosen[name] for name in CLI_ORDER if name in chosen])


#: Sidecar fields that name voxel axes (``i``, ``j``, ``k`` with an optional ``-``).
_AXIS_FIELDS = ("PhaseEncodingDirection", "SliceEncodingDirection")


def sidecar_with_history(sidecar: dict[str, Any], history: Sequence[dict[str, Any]]) -> tuple[dict[str, Any], list[str]]:
    """``sidecar`` for a processed volume, and warnings: the steps go in ``"MedconvertProcessing"``.

    A sidecar is built from the headers for the axes as read. Fields that name voxel
    axes follow a reorientation or flip (``j-`` becomes the axis and sign it moved to;
    ``SliceEncodingDirection`` is added when slices were not along ``k``, so
    ``SliceTiming`` stays right in BIDS terms); ``SliceTiming`` is dropped (with a
    warning) once a step changes the number of slices (resample, crop, pad).
    """
    out = dict(sidecar)
    warnings: list[str] = []
    if not history:
        return out, warnings
    out["MedconvertProcessing"] = [dict(h) for h in history]
    if "SliceTiming" in out and "SliceEncodingDirection" not in out:
        out["SliceEncodingDirection"] = "k"
    for entry in history:
        step = entry.get("step")
        if step in ("reorient", "flip"):
            if step == "reorient":
                axes, flips = list(entry["axes"]), list(entry["flips"])
            else:
                axes, flips = [0, 1, 2], [n == entry["axis"] for n in range(3)]
            for name in _AXIS_FIELDS + ("PhaseEncodingAxis",):
                value = out.get(name)
                if isinstance(value, str) and value[:1] in ("i", "j", "k"):
                    old = "ijk".index(value[0])
                    negative = value.endswith("-") != bool(flips[old])
                    out[name] = "ijk"[int(axes[old])] + ("-" if negative and name != "PhaseEncodingAxis" else "")
        elif step in ("resample", "resample_to", "crop", "crop_to_foreground", "pad_to") and "SliceTiming" in out:
            del out["SliceTiming"]
            warnings.append(f"SliceTiming left out of the sidecar: {step} changed the slices it describes")
    if out.get("SliceEncodingDirection") == "k" and "SliceTiming" not in out and "SliceEncodingDirection" not in sidecar:
        del out["SliceEncodingDirection"]
    return out, warnings
