"""`--store`: which backend holds durably's data, from one URL."""

from __future__ import annotations

from pathlib import Path


def parse_store(store: str, data_dir: Path) -> tuple[Path, str | None]:
    """(SQLite data directory, PostgreSQL DSN or None) for a `--store` value."""
    text = store.strip()
    scheme = text.split(":", 1)[0].lower()
    if scheme in ("postgresql", "postgres"):
        if "://" not in text or not text.split("://", 1)[1]:
            raise ValueError(
                "--store needs a full DSN: postgresql://USER:PASSWORD@HOST:PORT/DATABASE"
            )
        return data_dir, text
    if scheme == "sqlite":
        if not text.lower().startswith("sqlite:///") or len(text) <= len("sqlite:///"):
            raise ValueError("--store sqlite:///PATH needs a path (sqlite:///var/lib/durably)")
        # sqlite:///relative/dir and sqlite:////absolute/dir, as SQLAlchemy spells them
        return Path(text[len("sqlite:///") :]), None
    raise ValueError(
        f"--store must start with postgresql:// or sqlite:///, not {text.split('://', 1)[0]!r}"
    )
