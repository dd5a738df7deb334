"""Keyed, deterministic pseudonyms: UIDs, patient IDs/names, per-patient date shifts.

Every value is derived from the original with HMAC-SHA256 under the user's
key, so the same input gives the same output on any machine, in any batch, as
long as the key is the same; without the key the mapping cannot be reversed
or recomputed. Each kind of value uses its own domain label, so a UID and a
PatientID with the same text get unrelated pseudonyms.

* UIDs: ``2.25.<decimal of the first 128 bits of the HMAC>`` (PS3.5 B.2: a
  UUID-derived UID; at most 44 characters, no leading zeros).
* PatientID: ``"ANON"`` + 16 upper-case hex digits; PatientName: the same
  token (a PN with one component), so name and ID stay paired.
* Dates (Modified Dates option): shifted back by a whole number of days
  between 1 and 3652 that depends only on the key and the original PatientID,
  so intervals between a patient's studies are kept exactly. Times of day
  and UTC offsets are kept.
"""

from __future__ import annotations

import datetime as _dt
import functools
import hashlib
import hmac
import os
import re
import secrets
from pathlib import Path

from convert.errors import AnonymizationError

#: Key length used when none is given (random, per process, never shown).
RANDOM_KEY_BYTES = 32
_PROCESS_KEY: bytes | None = None

_DA = re.compile(r"^(\d{4})\.?(\d{2})?\.?(\d{2})?$")
_DT = re.compile(r"^(\d{4})(\d{2})?(\d{2})?([0-9.]*)([+-]\d{4})?$")


def process_key() -> bytes:
    """The random key of this process (created on first use; never printed or logged)."""
    global _PROCESS_KEY
    if _PROCESS_KEY is None:
        _PROCESS_KEY = secrets.token_bytes(RANDOM_KEY_BYTES)
    return _PROCESS_KEY


def load_key(key: bytes | str | Path | None) -> tuple[bytes, str]:
    """Resolve the user's key; returns ``(key_bytes, source)``.

    ``key`` may be raw bytes, a path to a key file (its bytes, one trailing
    newline stripped), or None: then ``MEDCONVERT_KEY`` (the key itself) or
    ``MEDCONVERT_KEY_FILE`` (a path) from the environment, else a random
    per-process key (``source == "random"``: pseudonyms then differ between runs).

    Raises:
        AnonymizationError: the key file is missing, unreadable or empty.
    """
    if isinstance(key, (bytes, bytearray)):
        if not key:
            raise AnonymizationError("the de-identification key is empty")
        return bytes(key), "bytes"
    if key is None:
        env = os.environ.get("MEDCONVERT_KEY")
        if env:
            return env.encode("utf-8"), "env MEDCONVERT_KEY"
        env_file = os.environ.get("MEDCONVERT_KEY_FILE")
        if env_file:
            return _read_key_file(Path(env_file)), "env MEDCONVERT_KEY_FILE"
        return process_key(), "random"
    return _read_key_file(Path(key)), "file"


def _read_key_file(path: Path) -> bytes:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise AnonymizationError("key file not found; create one, e.g. 'head -c 32 /dev/urandom > key'", path) from None
    except OSError as exc:
        raise AnonymizationError(f"cannot read key file: {exc.strerror or exc}", path) from None
    if data.endswith(b"\n"):
        data = data[:-1]
        if data.endswith(b"\r"):
            data = data[:-1]
    if not data:
        raise AnonymizationError("key file is empty", path)
    return data


class Pseudonymizer:
    """Derives all pseudonyms for one key. Cheap to create; results are memoised.

    Args:
        key: the secret key (bytes). Keep it safe: anyone holding it can
            re-derive pseudonyms from original values (not invert them).
    """

    def __init__(self, key: bytes) -> None:
        if not key:
            raise AnonymizationError("the de-identification key is empty")
        self._key = bytes(key)
        self.uid = functools.lru_cache(maxsize=65536)(self._uid)  # type: ignore[method-assign]
        self.patient_id = functools.lru_cache(maxsize=4096)(self._patient_id)  # type: ignore[method-assign]
        self.day_offset = functools.lru_cache(maxsize=4096)(self._day_offset)  # type: ignore[method-assign]

    def __repr__(self) -> str:  # never show the key
        return "Pseudonymizer(key=<hidden>)"

    def digest(self, domain: str, value: str) -> bytes:
        """HMAC-SHA256 of ``domain`` + NUL + ``value`` (UTF-8) under the key."""
        return hmac.new(self._key, domain.encode() + b"\0" + value.encode("utf-8", "surrogateescape"),
                        hashlib.sha256).digest()

    def _uid(self, original: str) -> str:
        """Pseudonym UID ``2.25.<int>`` for an original UID (whitespace/NUL padding ignored)."""
        value = str(original).strip(" \0")
        return "2.25." + str(int.from_bytes(self.digest("uid", value)[:16], "big"))

    def _patient_id(self, original: str) -> str:
        """Pseudonym PatientID (``ANON`` + 16 hex digits) for an original PatientID."""
        return "ANON" + self.digest("patient-id", str(original).strip()).hex()[:16].upper()

    def patient_name(self, original_id: str, original_name: str = "") -> str:
        """Pseudonym PatientName: the pseudonym of the PatientID (or of the name when the ID is empty)."""
        if str(original_id).strip():
            return self.patient_id(original_id)
        return "ANON" + self.digest("patient-name", str(original_name).strip()).hex()[:16].upper()

    def _day_offset(self, original_patient_id: str) -> int:
        """Days to add to every date of this patient: between -3652 and -1 (back in time)."""
        h = int.from_bytes(self.digest("date-shift", str(original_patient_id).strip())[:8], "big")
        return -(1 + h % 3652)

    def short_token(self, domain: str, value: str, length: int = 12) -> str:
        """An upper-case hex token for ``value`` (used for AE titles and other short strings)."""
        return self.digest(domain, value).hex()[:length].upper()


def shift_da(value: str, days: int) -> str | None:
    """Shift a DA value (``YYYYMMDD``, legacy ``YYYY.MM.DD``) by ``days``; None when unparseable.

    A date range ``A-B`` shifts both ends. Partial dates (``YYYY``, ``YYYYMM``)
    are shifted from their first day and keep their precision.
    """
    value = value.strip()
    if "-" in value:
        parts = [shift_da(p, days) if p else "" for p in value.split("-", 1)]
        return None if any(p is None for p in parts) else "-".join(parts)  # type: ignore[arg-type]
    m = _DA.match(value)
    if not m:
        return None
    year, month, day = m.group(1), m.group(2), m.group(3)
    try:
        date = _dt.date(int(year), int(month or 1), int(day or 1)) + _dt.timedelta(days=days)
    except (ValueError, OverflowError):
        return None
    text = f"{date.year:04d}{date.month:02d}{date.day:02d}"
    return text[: 4 + (2 if month else 0) + (2 if day else 0)]


def shift_dt(value: str, days: int) -> str | None:
    """Shift the date part of a DT value by ``days``; time and UTC offset (``&ZZXX``) are kept."""
    value = value.strip()
    m = _DT.match(value)
    if not m:
        return None
    year, month, day, rest, tz = m.groups()
    shifted = shift_da(year + (month or "") + (day or ""), days)
    if shifted is None:
        return None
    return shifted + (rest or "") + (tz or "")
