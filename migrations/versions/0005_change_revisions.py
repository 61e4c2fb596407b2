"""Change revisions: counters the database itself raises whenever what a release reads changes.

* ``citizens.consent_revision`` rises with every insert, update or delete of the citizen's
  consents, of their consents' events and of their consents' key grants, and with every change of
  the citizen's verify key: everything the consent gate verifies and decides on, and the grants a
  release opens keys with.
* ``streams.chunk_revision`` rises with every insert, update or delete of the stream's chunks, and
  with any change of one of its stream keys' public key.

Also: contributions of releases still running are marked not yet told (they are now held back
by their release's status, not by the flag).

They are raised by triggers, not by the application, so that no write path can forget them: the
aggregation service remembers decisions and bounded frames by these counters
(``aggregation.admission_memo``, ``aggregation.material_revisions``) and must see every change.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22 00:50:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_RAISE_CITIZEN = "UPDATE citizens SET consent_revision = consent_revision + 1 WHERE id = {who}"
_CITIZEN_OF_CONSENT = "(SELECT citizen_id FROM consents WHERE id = {row}.consent_id)"
_RAISE_STREAM = "UPDATE streams SET chunk_revision = chunk_revision + 1 WHERE id = {row}.stream_id"

#: (table, the citizen or stream a row belongs to as SQL on NEW/OLD, the statement raising it)
_SQLITE_ROW_TRIGGERS = (
    ("consents", "{row}.citizen_id", _RAISE_CITIZEN),
    ("consent_events", _CITIZEN_OF_CONSENT, _RAISE_CITIZEN),
    ("key_grants", _CITIZEN_OF_CONSENT, _RAISE_CITIZEN),
    ("chunks", None, _RAISE_STREAM),
)


def _sqlite_upgrade() -> None:
    for table, who, statement in _SQLITE_ROW_TRIGGERS:
        for event, rows in (("INSERT", ("NEW",)), ("UPDATE", ("OLD", "NEW")), ("DELETE", ("OLD",))):
            body = "; ".join(
                statement.format(who=(who or "").format(row=row), row=row) for row in rows
            )
            op.execute(
                f"CREATE TRIGGER revise_{table}_{event.lower()} AFTER {event} ON {table} "
                f"BEGIN {body}; END"
            )
    op.execute(
        "CREATE TRIGGER revise_citizens_verify_key AFTER UPDATE OF verify_key ON citizens "
        "BEGIN " + _RAISE_CITIZEN.format(who="NEW.id") + "; END"
    )
    op.execute(
        "CREATE TRIGGER revise_stream_keys_public_key AFTER UPDATE OF public_key ON stream_keys "
        "BEGIN " + _RAISE_STREAM.format(row="NEW") + "; END"
    )


def _pg_body(raise_old: str, raise_new: str) -> str:
    """A row trigger's body: NEW and OLD are only defined for the operations that have them."""
    return (
        f"IF TG_OP <> 'INSERT' THEN {raise_old}; END IF; "
        f"IF TG_OP <> 'DELETE' THEN {raise_new}; END IF;"
    )


_PG_FUNCTIONS = {
    "consents": _pg_body(
        _RAISE_CITIZEN.format(who="OLD.citizen_id"), _RAISE_CITIZEN.format(who="NEW.citizen_id")
    ),
    "consent_events": _pg_body(
        _RAISE_CITIZEN.format(who=_CITIZEN_OF_CONSENT.format(row="OLD")),
        _RAISE_CITIZEN.format(who=_CITIZEN_OF_CONSENT.format(row="NEW")),
    ),
    "chunks": _pg_body(_RAISE_STREAM.format(row="OLD"), _RAISE_STREAM.format(row="NEW")),
}
_PG_FUNCTIONS["key_grants"] = _PG_FUNCTIONS["consent_events"]


def _postgresql_upgrade() -> None:
    for table, body in _PG_FUNCTIONS.items():
        op.execute(
            f"CREATE FUNCTION revise_{table}() RETURNS trigger LANGUAGE plpgsql AS $$ "
            f"BEGIN {body} RETURN NULL; END $$"
        )
        op.execute(
            f"CREATE TRIGGER revise_{table} AFTER INSERT OR UPDATE OR DELETE ON {table} "
            f"FOR EACH ROW EXECUTE FUNCTION revise_{table}()"
        )
    op.execute(
        "CREATE FUNCTION revise_citizens_verify_key() RETURNS trigger LANGUAGE plpgsql AS $$ "
        "BEGIN NEW.consent_revision := OLD.consent_revision + 1; RETURN NEW; END $$"
    )
    op.execute(
        "CREATE TRIGGER revise_citizens_verify_key BEFORE UPDATE ON citizens FOR EACH ROW "
        "WHEN (OLD.verify_key IS DISTINCT FROM NEW.verify_key) "
        "EXECUTE FUNCTION revise_citizens_verify_key()"
    )
    op.execute(
        "CREATE FUNCTION revise_stream_keys_public_key() RETURNS trigger LANGUAGE plpgsql AS $$ "
        "BEGIN " + _RAISE_STREAM.format(row="NEW") + "; RETURN NULL; END $$"
    )
    op.execute(
        "CREATE TRIGGER revise_stream_keys_public_key AFTER UPDATE ON stream_keys FOR EACH ROW "
        "WHEN (OLD.public_key IS DISTINCT FROM NEW.public_key) "
        "EXECUTE FUNCTION revise_stream_keys_public_key()"
    )


def upgrade() -> None:
    op.add_column(
        "citizens",
        sa.Column("consent_revision", sa.Integer(), nullable=False, server_default="0"),
    )
    op.add_column(
        "streams", sa.Column("chunk_revision", sa.Integer(), nullable=False, server_default="0")
    )
    if op.get_bind().dialect.name == "postgresql":
        _postgresql_upgrade()
    else:
        _sqlite_upgrade()
    # Contributions used to be held back from citizens' logs by being stored noticed until their
    # release settled; now the release's status holds them back. Those of a release still running
    # during the upgrade must not stay marked as told.
    op.execute(
        "UPDATE release_contributions SET noticed = false WHERE release_id IN "
        "(SELECT id FROM dp_releases WHERE status = 'reserved')"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in _PG_FUNCTIONS:
            op.execute(f"DROP TRIGGER IF EXISTS revise_{table} ON {table}")
            op.execute(f"DROP FUNCTION IF EXISTS revise_{table}()")
        op.execute("DROP TRIGGER IF EXISTS revise_citizens_verify_key ON citizens")
        op.execute("DROP FUNCTION IF EXISTS revise_citizens_verify_key()")
        op.execute("DROP TRIGGER IF EXISTS revise_stream_keys_public_key ON stream_keys")
        op.execute("DROP FUNCTION IF EXISTS revise_stream_keys_public_key()")
    else:
        for table, _, _ in _SQLITE_ROW_TRIGGERS:
            for event in ("insert", "update", "delete"):
                op.execute(f"DROP TRIGGER IF EXISTS revise_{table}_{event}")
        op.execute("DROP TRIGGER IF EXISTS revise_citizens_verify_key")
        op.execute("DROP TRIGGER IF EXISTS revise_stream_keys_public_key")
    with op.batch_alter_table("streams") as batch_op:
        batch_op.drop_column("chunk_revision")
    with op.batch_alter_table("citizens") as batch_op:
        batch_op.drop_column("consent_revision")
