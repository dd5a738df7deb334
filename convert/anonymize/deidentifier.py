"""A de-identifying function for conversions: header in, de-identified copy out, one key.

``convert.convert(src, out, deidentify=Deidentifier(key))`` (what ``medconvert convert
--anonymize`` passes). Unlike a lambda it can be pickled to worker processes and Dask workers,
and it carries a :attr:`~Deidentifier.fingerprint` (method, options, an HMAC check of the key;
never the key) so that a resumed archive run knows whether earlier outputs were written by the
same de-identification.
"""

from __future__ import annotations

from typing import Any, Iterable

from convert.anonymize.scrubber import Scrubber


class Deidentifier:
    """``deidentify(header) -> de-identified copy`` by one :class:`~convert.anonymize.Scrubber`.

    Args:
        key: the pseudonym key (bytes).
        keep: PS3.15 options (:data:`convert.anonymize.OPTIONS`).
        allow_burned_in: let objects that may carry burned-in text through (flagged).
    """

    def __init__(self, key: bytes, keep: Iterable[str] = (), allow_burned_in: bool = False) -> None:
        from convert.anonymize.run import job_fingerprint

        self.scrubber = Scrubber(key, keep, allow_burned_in)
        #: What decides the de-identified bytes (JSON-ready; no key, no PHI).
        self.fingerprint: dict[str, Any] = job_fingerprint(key, self.scrubber)

    def __call__(self, ds: Any) -> Any:
        return self.scrubber.scrub(ds).dataset

    def __repr__(self) -> str:
        return f"Deidentifier({self.fingerprint['method']!r})"
