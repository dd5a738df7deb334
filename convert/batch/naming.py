"""Output names of converted series: templates over non-identifying header fields, sanitised.

A name is ``render_name(template, fields)``: ``{Field}`` placeholders from
:data:`NAME_FIELDS` filled from the series' first header (the de-identified one
when anonymizing: :data:`DEFAULT_ANONYMIZED_NAME` uses the pseudonym), then made
a safe file-name stem (:func:`sanitize_name`). dcm2niix's postfixes tell the
volumes of one series apart (:func:`output_suffixes`); :func:`unique_stem`
numbers the rest (``_2``, ``_3``...).
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any, Callable, Sequence

from convert.dicom.series import Series, echo_label, postfix
from convert.errors import ConvertError
from convert.volume import Volume

#: Fields a ``--name`` template may use (non-identifying).
NAME_FIELDS: tuple[str, ...] = ("SeriesNumber", "SeriesDescription", "ProtocolName", "Modality", "EchoNumber",
                                "AcquisitionNumber", "ImageType", "SequenceName", "BodyPartExamined",
                                "Manufacturer", "Split", "Index", "Pseudonym")

_WINDOWS_RESERVED = {"CON", "PRN", "AUX", "NUL"} | {f"COM{i}" for i in range(1, 10)} | {f"LPT{i}" for i in range(1, 10)}

DEFAULT_NAME = "{SeriesNumber}_{SeriesDescription}"

#: Default name when de-identifying: the patient pseudonym, never patient data.
DEFAULT_ANONYMIZED_NAME = "{Pseudonym}_{SeriesNumber}_{Modality}"


def sanitize_name(text: str, max_length: int = 120) -> str:
    """A safe file-name stem: no separators, ``..``, control chars, leading dots, reserved names.

    Keeps letters, digits, ``-``, ``_``, ``.``, ``+``, ``=``; everything else becomes
    ``_``; runs of ``_`` collapse; result is never empty (``"series"``).
    """
    text = unicodedata.normalize("NFKC", str(text))
    text = "".join(ch if (ch.isalnum() and ch.isascii()) or ch in "-_.+=" else "_" for ch in text)
    text = re.sub(r"\.{2,}", "_", text)
    text = re.sub(r"_+", "_", text).strip("_. ")
    text = text[:max_length].rstrip("_. ")
    if not text:
        text = "series"
    if text.split(".")[0].upper() in _WINDOWS_RESERVED:
        text = "_" + text
    return text


def series_name_fields(series: Series, volume_index: int, n_volumes: int,
                 deidentify: Callable[[Any], Any] | None = None) -> dict[str, str]:
    ds = series.first.load_header()
    if deidentify is not None and ds is not None:
        ds = deidentify(ds)  # names come from the de-identified header: pseudonyms, cleaned text
    pseudonym = str(ds.get("PatientID", "")) if deidentify and ds is not None else ""
    return name_fields(series, ds if ds is not None else {}, volume_index, n_volumes, pseudonym)


def name_fields(series: Series, header: Any, volume_index: int = 0, n_volumes: int = 1,
                pseudonym: str = "") -> dict[str, str]:
    """Values of :data:`NAME_FIELDS` for volume ``volume_index`` of ``series``.

    ``header`` is the first file's header: anything with ``.get(keyword, default)``
    (a pydicom Dataset or a :class:`convert.dicom.header.Header` view).
    """
    values: dict[str, str] = {"Pseudonym": pseudonym}
    for key in NAME_FIELDS:
        if key == "Pseudonym":
            continue
        if key == "Split":
            values[key] = series.split
        elif key == "Index":
            values[key] = str(volume_index + 1) if n_volumes > 1 else ""
        elif key == "EchoNumber":
            values[key] = str(series.first.echo_number or "")
        elif key == "ImageType":
            values[key] = "_".join(series.first.image_type)
        else:
            value = header.get(key, "")
            values[key] = "" if value is None else str(value)
    return values


class _Fields(dict):  # type: ignore[type-arg]
    def __missing__(self, key: str) -> str:
        raise KeyError(key)


def render_name(template: str, fields: dict[str, str]) -> str:
    """Fill ``template`` (``{Field}`` placeholders from :data:`NAME_FIELDS`) and sanitise the result.

    Raises:
        ConvertError: an unknown field, or attribute/index access in the template.
    """
    if re.search(r"\{[^}]*[.\[!:]", template):
        raise ConvertError(f"name template {template!r} may only use plain fields such as {{SeriesNumber}}")
    try:
        text = template.format_map(_Fields(fields))
    except KeyError as exc:
        raise ConvertError(
            f"unknown field {exc} in name template {template!r}; allowed: {', '.join(NAME_FIELDS)}") from None
    except (ValueError, IndexError) as exc:
        raise ConvertError(f"bad name template {template!r}: {exc}") from None
    return sanitize_name(text)


def volume_suffixes(volumes: Sequence[Volume]) -> list[str]:
    """dcm2niix's postfixes for the volumes of one multi-frame series (:func:`convert.dicom.series.postfix`).

    Each volume's EchoNumber / EchoTime / ImageType (from its meta) decide: e.g.
    ``["e1", "e2_fieldmaphz"]`` for a Philips B0 file, ``["", "ph"]`` for magnitude
    and phase, ``["e1", "e2"]`` for two echoes. ``""`` means no postfix. When two
    volumes would get the same name, the 1-based volume index is appended
    (``["1", "2"]`` for two stacks of the same kind). Always unique.
    """
    numbers, times, types = [], [], []
    for volume in volumes:
        acquisition = volume.meta.acquisition
        number = acquisition.get("EchoNumber")
        numbers.append(int(number) if isinstance(number, (int, float)) else None)
        time = acquisition.get("EchoTime")  # seconds in meta; dcm2niix names echoes in ms
        times.append(round(float(time) * 1000.0, 6) if isinstance(time, (int, float)) else None)
        types.append([str(t) for t in (acquisition.get("ImageType") or ())])
    labels = {echo_label(n, t) for n, t in zip(numbers, times)} - {""}
    out = [postfix(n, t, len(labels) > 1, it) for n, t, it in zip(numbers, times, types)]
    if len(set(out)) < len(out):
        out = ["_".join(p for p in (suffix, str(n + 1)) if p) for n, suffix in enumerate(out)]
    return out


def output_suffixes(series: Series, volumes: Sequence[Volume], indexed: bool = False) -> list[str]:
    """The file-name postfix (dcm2niix's, no leading ``_``) of each volume read from ``series``.

    Slice and mosaic series carry theirs from assembly (:attr:`Series.suffix`);
    a multi-frame series names each of its volumes (:func:`volume_suffixes`).
    ``indexed``: the name template has ``{Index}``, so volumes of one multi-frame
    series need no index postfix to be told apart.
    """
    if series.kind != "multiframe":
        return [series.suffix] * len(volumes)
    suffixes = volume_suffixes(volumes)
    if indexed and len(volumes) > 1:
        return [""] * len(volumes)
    return suffixes


def unique_stem(stem: str, claimed: set[str]) -> str:
    """``stem``, or ``stem_2``, ``stem_3``... if another series of this run already has it (case-insensitive)."""
    candidate, n = stem, 1
    while candidate.lower() in claimed:
        n += 1
        candidate = f"{stem}_{n}"
    claimed.add(candidate.lower())
    return candidate
