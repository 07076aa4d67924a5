"""``python -m wsops`` runs the CLI."""

from __future__ import annotations

from wsops.cli import main

if __name__ == "__main__":
    main()
