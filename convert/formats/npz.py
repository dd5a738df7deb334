"""NumPy ``.npz`` / ``.npy`` files for training code: voxels with the affine and spacing.

``.npz`` (one file): arrays ``voxels`` (``[i, j, k(, t)]``, real values: stored
values when unscaled, else the scaled values as int16/int32 when exact, else
float32), ``affine`` (4x4 float64, voxel index -> RAS+ mm), ``spacing`` (mm along
i, j, k), and the strings ``orientation``, ``units`` and ``history`` (JSON list of
the processing steps). ``np.load(path)["voxels"]`` is all a data loader needs.

``.npy`` holds exactly one array, so the voxels go in ``NAME.npy`` and the
geometry (``affine``, ``spacing``, ``orientation``, ``units``, ``history``) in
``NAME.json`` beside it; reading a ``.npy`` needs that JSON.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from convert.atomic import atomic_paths
from convert.errors import CorruptFileError, InputNotFoundError
from convert.geometry import geometry_from_affine
from convert.volume import Meta, Volume


def real_voxels(volume: Volume) -> np.ndarray:
    """The real values of ``volume`` in the narrowest exact dtype (stored dtype when unscaled; the
    dtype rule of :func:`convert.process.steps.smallest_dtype`, as ``hu`` uses)."""
    from convert.process.steps import smallest_dtype

    if not volume.is_scaled:
        return volume.voxels()
    stored = volume.voxels()
    integral = (np.issubdtype(stored.dtype, np.integer) and float(volume.slope).is_integer()
                and float(volume.intercept).is_integer())
    if integral and stored.size:
        ends = [float(stored.min()) * volume.slope + volume.intercept,
                float(stored.max()) * volume.slope + volume.intercept]
        dtype = smallest_dtype(min(ends), max(ends), True)
        if dtype.kind == "i":
            return (stored.astype(np.int64) * int(volume.slope) + int(volume.intercept)).astype(dtype)
    return volume.scaled().astype(np.float32)


def _geometry(volume: Volume) -> dict[str, Any]:
    return {"affine": np.asarray(volume.affine).tolist(), "spacing": [float(s) for s in volume.spacing],
            "orientation": volume.orientation, "units": volume.meta.units,
            "history": list(volume.history), "layout": "[i, j, k(, t)]; affine maps (i, j, k, 1) to RAS+ mm"}


class NumpyFormat:
    """``.npz`` (voxels + geometry in one file) or ``.npy`` (+ ``.json`` geometry beside it)."""

    can_read = True
    can_write = True

    def __init__(self, name: str, extension: str, description: str) -> None:
        self.name = name
        self.extensions = (extension,)
        self.description = description

    def sniff(self, path: Path) -> bool:
        try:
            with open(path, "rb") as fh:
                head = fh.read(6)
        except OSError:
            return False
        return head[:4] == b"PK\x03\x04" if self.name == "npz" else head == b"\x93NUMPY"

    def _json_path(self, path: Path) -> Path:
        return path.with_name(path.name[: -len(".npy")] + ".json")

    def output_paths(self, path: Path) -> list[Path]:
        path = Path(path)
        return [path] if self.name == "npz" else [path, self._json_path(path)]

    def write(self, volume: Volume, path: Path, *, overwrite: bool = False, compress: bool = False,
              **options: Any) -> list[Path]:
        """Write atomically; ``compress`` zips the ``.npz`` members (slower, smaller)."""
        if options:
            raise TypeError(f"{self.name} writer got unknown options: {', '.join(options)}")
        path = Path(path)
        voxels = np.ascontiguousarray(real_voxels(volume))
        geometry = _geometry(volume)
        targets = self.output_paths(path)
        with atomic_paths(targets, overwrite=overwrite) as temps:
            if self.name == "npz":
                save = np.savez_compressed if compress else np.savez
                with open(temps[0], "wb") as fh:
                    save(fh, voxels=voxels, affine=np.asarray(volume.affine, dtype=np.float64),
                         spacing=np.asarray(geometry["spacing"]), orientation=np.str_(geometry["orientation"]),
                         units=np.str_(geometry["units"] or ""), history=np.str_(json.dumps(geometry["history"])))
            else:
                with open(temps[0], "wb") as fh:
                    np.save(fh, voxels, allow_pickle=False)
                temps[1].write_text(json.dumps(geometry, indent=2) + "\n", encoding="utf-8")
        return targets

    def read(self, path: Path) -> Volume:
        path = Path(path)
        if not path.is_file():
            raise InputNotFoundError("file not found", path)
        try:
            if self.name == "npz":
                with np.load(path, allow_pickle=False) as data:
                    if "voxels" not in data or "affine" not in data:
                        raise CorruptFileError("an .npz image needs the arrays 'voxels' and 'affine'", path)
                    voxels, affine = data["voxels"], data["affine"]
                    units = str(data["units"]) if "units" in data else ""
                    history = json.loads(str(data["history"])) if "history" in data else []
            else:
                json_path = self._json_path(path)
                if not json_path.is_file():
                    raise CorruptFileError(f"an .npy image needs its geometry in {json_path.name} beside it", path)
                voxels = np.load(path, allow_pickle=False)
                geometry = json.loads(json_path.read_text(encoding="utf-8"))
                affine, units, history = np.asarray(geometry["affine"]), geometry.get("units") or "", \
                    geometry.get("history") or []
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
            raise CorruptFileError(f"cannot read {self.name} file: {exc}", path) from exc
        geometry_from_affine(affine)  # refuses zero-length axes with a GeometryError
        return Volume(array=voxels, affine=affine, meta=Meta(units=units or None), history=tuple(history))


NPZ = NumpyFormat("npz", ".npz", "NumPy .npz: voxels + affine + spacing in one file (for training code)")
NPY = NumpyFormat("npy", ".npy", "NumPy .npy voxels + .json geometry beside it (for training code)")
