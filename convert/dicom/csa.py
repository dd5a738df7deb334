"""Siemens CSA headers: the private (0029,xx10) "CSA Image Header Info" and (0029,xx20) series blocks.

A CSA header is a little-endian table of named tags (Siemens' own, not DICOM), each with a
VR, a value multiplicity and a list of text items. Two layouts exist: CSA2 starts with
``SV10`` and four unused bytes, CSA1 starts with the tag count; then ``n_tags`` (uint32) and
a check word (uint32), then per tag its name (64 bytes, NUL-terminated), VM (int32), VR (4
bytes), SyngoDT, item count and a check word (int32 each), then per item four int32 (CSA2:
the second is the item's length; CSA1: the first minus the second tag's item count) and the
item's bytes, NUL-terminated and padded to 4 bytes. Numbers are stored as text.

The reading rules are those of ``nibabel.nicom.csareader`` (tested against it on random
and real headers), without importing nibabel: on a plain Siemens mosaic series that import
(which brings scipy and pydicom with it) cost more than the rest of the conversion.
"""

from __future__ import annotations

import struct
from typing import Any

__all__ = ["CSAError", "image_header", "parse"]

#: Tags or items above this count mean garbage (nibabel's limit).
MAX_ITEMS = 1000
_CONVERTERS = {"FL": float, "FD": float, "DS": float, "SS": int, "US": int, "SL": int, "UL": int, "IS": int}
_TAG_HEAD = struct.Struct("<64si4s3i")
_ITEM_HEAD = struct.Struct("<4i")
_COUNTS = struct.Struct("<2I")
#: Private creator of the CSA blocks in group 0029.
CREATOR = "SIEMENS CSA HEADER"


class CSAError(ValueError):
    """The bytes are not a readable CSA header."""


def _text(raw: bytes) -> Any:
    """The bytes up to the first NUL as latin-1 text; bytes without a NUL are kept as bytes
    (nibabel's rule: an empty item reads as ``b""``)."""
    end = raw.find(b"\x00")
    return raw if end < 0 else raw[:end].decode("latin-1")


def _name(raw: bytes) -> str:
    """A fixed-width name field as text (up to the first NUL)."""
    text = _text(raw)
    return text.decode("latin-1") if isinstance(text, bytes) else text


def parse(data: bytes) -> dict[str, list[Any]]:
    """Every tag of a CSA header: ``{name: items}``, numbers converted by the tag's VR.

    Raises:
        CSAError: not a CSA header, a count out of range, or an item that runs past the end.
    """
    size = len(data)
    csa2 = data[:4] == b"SV10"
    pos = 8 if csa2 else 0
    try:
        n_tags, _ = _COUNTS.unpack_from(data, pos)
        pos += _COUNTS.size
        if not 0 < n_tags <= MAX_ITEMS:
            raise CSAError(f"{n_tags} tags (expected 1 to {MAX_ITEMS})")
        tags: dict[str, list[Any]] = {}
        first_count = 0
        for tag_no in range(n_tags):
            raw_name, vm, raw_vr, _, n_items, _ = _TAG_HEAD.unpack_from(data, pos)
            pos += _TAG_HEAD.size
            if n_items > MAX_ITEMS:
                raise CSAError(f"{n_items} items (expected at most {MAX_ITEMS})")
            if tag_no == 1:
                first_count = n_items  # CSA1 item lengths are offset by the second tag's item count
            converter = _CONVERTERS.get(_name(raw_vr))
            n_values = vm if vm else n_items
            items: list[Any] = []
            for item_no in range(n_items):
                x0, x1, _, _ = _ITEM_HEAD.unpack_from(data, pos)
                pos += _ITEM_HEAD.size
                if csa2:
                    length = x1
                    if pos + length > size:
                        raise CSAError("an item runs past the end of the header")
                else:
                    length = x0 - first_count
                    if length < 0 or pos + length > size:
                        if item_no < vm:
                            items.append("")
                        break
                if item_no >= n_values:
                    if length:
                        raise CSAError("a non-empty item beyond the tag's value count")
                    continue
                item: Any = _text(data[pos:pos + length])
                pos += length
                if converter is not None:
                    if not length:  # the real values ended before the item count
                        n_values = item_no
                        continue
                    item = converter(item)
                items.append(item)
                pos += -length % 4  # items are padded to 4 bytes
            tags[_name(raw_name)] = items
    except (struct.error, ValueError) as exc:
        if isinstance(exc, CSAError):
            raise
        raise CSAError(f"not a readable CSA header: {exc}") from None
    return tags


def image_header(ds: Any) -> dict[str, Any] | None:
    """The CSA Image Header Info of ``ds`` (a header view or a pydicom Dataset) as
    ``{name: value}`` (one item: the item; several: a list; tags without items left out),
    or None when the file has none or it is not readable.

    The block is found through its private creator ``SIEMENS CSA HEADER`` in group 0029
    (element xx10), as nibabel's ``get_csa_header(ds, "image")`` finds it.
    """
    try:
        block = ds.private_block(0x0029, CREATOR)
        # a header view hands out the stored bytes (no private dictionary needed in implicit VR)
        value = block.raw(0x10) if hasattr(block, "raw") else block[0x10].value
    except (KeyError, ValueError, AttributeError, TypeError):
        return None
    if not isinstance(value, (bytes, bytearray)):
        return None
    try:
        tags = parse(bytes(value))
    except CSAError:
        return None
    return {name: items[0] if len(items) == 1 else items for name, items in tags.items() if items}
