"""``python -m convert`` runs the medconvert CLI (plain DICOM -> NIfTI conversions take the streaming shortcut)."""

from convert._fastcli import main

if __name__ == "__main__":  # pragma: no cover
    main()
