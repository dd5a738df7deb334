"""``python -m convert`` runs the medconvert CLI."""

from convert.cli import main

if __name__ == "__main__":  # pragma: no cover
    main()
