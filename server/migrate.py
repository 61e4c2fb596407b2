"""Bringing a database to the newest schema with Alembic, from code (no ``alembic.ini`` needed).

The migrations live in the repository's ``migrations`` directory, found relative to this file, so
the service must run from a checkout or an editable install (``make install``).
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import make_url

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def alembic_config(database_url: str) -> Config:
    """The Alembic configuration for ``database_url`` (what ``alembic.ini`` says, minus logging)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("path_separator", "os")
    # Passed as an attribute, not as sqlalchemy.url: ini options interpolate '%' (as in '%3D').
    config.attributes["database_url"] = database_url
    return config


def upgrade_to_head(database_url: str) -> None:
    """Apply every migration not yet applied; a no-op on a database that is up to date."""
    _ensure_sqlite_parent(database_url)
    command.upgrade(alembic_config(database_url), "head")


def _ensure_sqlite_parent(database_url: str) -> None:
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite":
        return
    database = url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    Path(database).parent.mkdir(parents=True, exist_ok=True)
