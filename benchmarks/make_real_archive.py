"""Generate a large DICOM archive by replicating the real scanner headers of ``../shared/conformance``.

Nothing in the replicas is synthetic except identifiers: every file is a real
file of the shared conformance sets (all its elements, private blocks and CSA
headers, pixel data as stored), read with pydicom and written again with

* new StudyInstanceUID (one per cycle and source study), SeriesInstanceUID (one
  per replica series), SOPInstanceUID / MediaStorageSOPInstanceUID (one per
  file) and FrameOfReferenceUID (one per cycle and source frame), all
  deterministic ``2.25.<decimal>`` UIDs;
* a new SeriesNumber (the replica series' index, 1, 2, ...);
* for *implicit* replicas: re-encoded as implicit VR little endian;
* for *echo* replicas: the series is written twice under one SeriesInstanceUID
  and SeriesNumber, with EchoNumbers 1 and 2 and EchoTime TE and 2 x TE, and
  InstanceNumbers continuing across the echoes, as a real multi-echo
  acquisition looks (the pixel data of both echoes is the stored one).

Templates (paths relative to the conformance folder): the four GE 4D EPI series
(150 files each) and the four Siemens mosaic 4D EPI series of ``dcm_qa_nih``,
the Siemens XA and Philips enhanced (multi-frame) files of ``dcm_qa_enh``, and
the gantry-tilted GE CT of ``dcm_qa_ct``. One *cycle* replicates every
template once in a fixed mode (see :data:`CYCLE`: explicit, implicit and
multi-echo GE EPI, explicit and implicit mosaics, explicit enhanced; 913 files,
10 series; the CT only in the first two cycles, explicit then implicit);
cycles repeat until the archive holds at least ``--files`` files. Layout: ``<archive>/<NNNN>_<template>_<mode>/<file>``.

The archive is cached in ``benchmarks/data/real-archive-<files>/`` (git-ignored)
with a manifest ``real-archive-<files>.json`` next to it (the replica series,
their SeriesNumber, template and mode); it is rebuilt when the generator
version, the requested size or the template files change. Deterministic: two
machines with the same shared data get the same bytes.

Usage::

    python benchmarks/make_real_archive.py                 # 5,000+ files, prints the folder
    python benchmarks/make_real_archive.py --files 20000 --shared /path/to/shared
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from make_ct_series import DATA_DIR, make_uid  # noqa: E402

GENERATOR_VERSION = 3
DEFAULT_FILES = 5000
IMPLICIT_VR_LE = "1.2.840.10008.1.2"
EXPLICIT_VR_LE = "1.2.840.10008.1.2.1"

#: template key -> folder under the conformance root (only its DICOM files are used)
TEMPLATES: dict[str, str] = {
    "ge-epi4": "dcm_qa_nih/In/20180918GE/mr_0004",
    "ge-epi5": "dcm_qa_nih/In/20180918GE/mr_0005",
    "ge-epi6": "dcm_qa_nih/In/20180918GE/mr_0006",
    "ge-epi7": "dcm_qa_nih/In/20180918GE/mr_0007",
    "si-mosaic3": "dcm_qa_nih/In/20180918Si/mr_0003",
    "si-mosaic4": "dcm_qa_nih/In/20180918Si/mr_0004",
    "si-mosaic5": "dcm_qa_nih/In/20180918Si/mr_0005",
    "si-mosaic6": "dcm_qa_nih/In/20180918Si/mr_0006",
    "si-enhanced": "dcm_qa_enh/In/Siemens/XA10",
    "philips-enhanced": "dcm_qa_enh/In/Philips",
    "ge-ct": "dcm_qa_ct/In/GE",
}

#: one cycle of replica series: (template, mode, cycles); mode is explicit | implicit | echo (two echoes,
#: explicit VR) | echo-implicit; cycles: the cycle numbers that include the entry (None: every cycle).
#: The tilted CT comes only twice (explicit in cycle 0, implicit in cycle 1): dcm2niix spends about 1 s on
#: each such series (it also writes a tilt-corrected volume), so more of them would make the archive's
#: timing mostly a measure of dcm2niix's tilt correction.
CYCLE: list[tuple[str, str, frozenset[int] | None]] = [
    ("ge-epi4", "explicit", None),
    ("ge-epi5", "implicit", None),
    ("ge-epi6", "echo", None),
    ("ge-epi7", "echo-implicit", None),
    ("si-mosaic3", "explicit", None),
    ("si-mosaic4", "implicit", None),
    ("si-mosaic5", "explicit", None),
    ("si-mosaic6", "implicit", None),
    ("si-enhanced", "explicit", None),
    ("philips-enhanced", "explicit", None),
    ("ge-ct", "explicit", frozenset({0})),
    ("ge-ct", "implicit", frozenset({1})),
]


def resolve_shared(shared: Path | None = None) -> Path:
    """The conformance folder: ``shared`` itself or its ``conformance/`` child; default
    ``../shared/conformance`` relative to the repository (as the tests find it)."""
    if shared is None:
        return HERE.parent.parent / "shared" / "conformance"
    shared = Path(shared)
    return shared / "conformance" if (shared / "conformance").is_dir() else shared


def archive_dir(n_files: int, data_dir: Path = DATA_DIR) -> Path:
    """The cache folder of the archive of at least ``n_files`` files."""
    return data_dir / f"real-archive-{n_files}"


def manifest_path(folder: Path) -> Path:
    """The manifest written next to a generated archive."""
    return folder.with_name(folder.name + ".json")


def _is_part10(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            return fh.read(132)[128:132] == b"DICM"
    except OSError:
        return False


@dataclass(frozen=True)
class Template:
    """The DICOM files of one real series: (file name, bytes), sorted by name."""

    key: str
    files: tuple[tuple[str, bytes], ...]

    @property
    def digest(self) -> str:
        h = hashlib.sha256()
        for name, data in self.files:
            h.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
        return h.hexdigest()[:16]


def load_templates(shared: Path) -> dict[str, Template]:
    """Read every template series; raises FileNotFoundError naming what is missing."""
    out: dict[str, Template] = {}
    for key, rel in TEMPLATES.items():
        folder = shared / rel
        if not folder.is_dir():
            raise FileNotFoundError(f"template folder {folder} is missing (pass --shared PATH to the conformance "
                                    "folder of the shared data)")
        files = tuple((p.name, p.read_bytes()) for p in sorted(folder.iterdir())
                      if p.is_file() and not p.name.startswith(".") and _is_part10(p))
        if not files:
            raise FileNotFoundError(f"no DICOM Part 10 files in template folder {folder}")
        out[key] = Template(key, files)
    return out


def plan(n_files: int, templates: dict[str, Template]) -> list[dict[str, object]]:
    """The replica series (dicts: series_number, cycle, template, mode, files) up to >= ``n_files`` files."""
    jobs: list[dict[str, object]] = []
    total = cycle = 0
    while total < n_files:
        for template, mode, cycles in CYCLE:
            if total >= n_files:
                break
            if cycles is not None and cycle not in cycles:
                continue
            count = len(templates[template].files) * (2 if mode.startswith("echo") else 1)
            jobs.append({"series_number": len(jobs) + 1, "cycle": cycle, "template": template, "mode": mode,
                         "files": count})
            total += count
        cycle += 1
    return jobs


def _replica(data: bytes, job: dict[str, object], echo: int, n_in_series: int) -> bytes:
    """One replica file: ``data`` (a real Part 10 file) with new identifiers, maybe re-encoded."""
    import pydicom
    from pydicom.uid import UID

    ds = pydicom.dcmread(io.BytesIO(data), force=False)
    cycle, number = job["cycle"], job["series_number"]
    old_sop = str(ds.SOPInstanceUID)
    ds.StudyInstanceUID = make_uid("real-archive", "study", cycle, ds.StudyInstanceUID)
    ds.SeriesInstanceUID = make_uid("real-archive", "series", number, ds.SeriesInstanceUID)
    sop = make_uid("real-archive", "sop", number, echo, old_sop)
    ds.SOPInstanceUID = sop
    ds.file_meta.MediaStorageSOPInstanceUID = UID(sop)
    if "FrameOfReferenceUID" in ds:
        ds.FrameOfReferenceUID = make_uid("real-archive", "frame", cycle, ds.FrameOfReferenceUID)
    ds.SeriesNumber = str(number)
    mode = str(job["mode"])
    if mode.startswith("echo"):
        te = float(ds.get("EchoTime") or 30.0)
        ds.EchoNumbers = str(echo)
        ds.EchoTime = f"{te * echo:g}"
        if "InstanceNumber" in ds and ds.InstanceNumber is not None:
            ds.InstanceNumber = str(int(ds.InstanceNumber) + (echo - 1) * n_in_series)
    buf = io.BytesIO()
    if mode.endswith("implicit"):
        ds.file_meta.TransferSyntaxUID = UID(IMPLICIT_VR_LE)
        ds.save_as(buf, implicit_vr=True, little_endian=True, enforce_file_format=True)
    else:
        ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def generate(n_files: int = DEFAULT_FILES, shared: Path | None = None, data_dir: Path = DATA_DIR,
             force: bool = False, quiet: bool = False) -> Path:
    """Build (or reuse) the archive of at least ``n_files`` replica files; returns its folder."""
    shared = resolve_shared(shared)
    templates = load_templates(shared)
    folder = archive_dir(n_files, data_dir)
    marker = manifest_path(folder)
    params = {"generator_version": GENERATOR_VERSION, "files": n_files,
              "templates": {k: t.digest for k, t in sorted(templates.items())}, "cycle": [[t, m, sorted(c) if c is not None else None] for t, m, c in CYCLE]}
    if not force and folder.is_dir() and marker.is_file():
        try:
            if json.loads(marker.read_text()).get("params") == json.loads(json.dumps(params)):
                return folder
        except (OSError, ValueError):
            pass
    jobs = plan(n_files, templates)
    data_dir.mkdir(parents=True, exist_ok=True)
    tmp = folder.with_name(folder.name + f".partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    written = size = 0
    for job in jobs:
        template = templates[str(job["template"])]
        sub = tmp / f"{job['series_number']:04d}_{job['template']}_{job['mode']}"
        sub.mkdir()
        echoes = (1, 2) if str(job["mode"]).startswith("echo") else (1,)
        for echo in echoes:
            for name, data in template.files:
                out = _replica(data, job, echo, len(template.files))
                (sub / (f"e{echo}_{name}" if len(echoes) > 1 else name)).write_bytes(out)
                written += 1
                size += len(out)
        if not quiet:
            print(f"  {folder.name}: {written}/{sum(int(j['files']) for j in jobs)} files", file=sys.stderr,
                  flush=True)
    shutil.rmtree(folder, ignore_errors=True)
    marker.unlink(missing_ok=True)
    tmp.rename(folder)
    marker.write_text(json.dumps({"params": params, "file_count": written, "bytes": size, "shared": str(shared),
                                  "series": jobs}, indent=2) + "\n")
    return folder


def load_manifest(folder: Path) -> dict[str, object]:
    """The manifest of a generated archive (see :func:`generate`)."""
    return json.loads(manifest_path(folder).read_text())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=DEFAULT_FILES,
                        help=f"at least this many files (default {DEFAULT_FILES})")
    parser.add_argument("--shared", type=Path, default=None,
                        help="the shared data folder or its conformance/ folder (default ../shared/conformance)")
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR, help="cache folder (default benchmarks/data)")
    parser.add_argument("--force", action="store_true", help="regenerate even if cached")
    args = parser.parse_args(argv)
    try:
        print(generate(args.files, args.shared, args.data_dir, force=args.force))
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
