"""Consent terms.

Departments and their data requests, declines, the citizens' signed terms and their events, and
the key grants that serve them (``vault.consent_models``).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21 06:55:08.865537
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "consents",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("terms_id", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("citizen_id", sa.String(length=32), nullable=False),
        sa.Column("department_id", sa.String(length=64), nullable=True),
        sa.Column("client_id", sa.String(length=64), nullable=True),
        sa.Column("request_id", sa.String(length=32), nullable=True),
        sa.Column("terms_json", sa.String(), nullable=False),
        sa.Column("signature", sa.LargeBinary(), nullable=False),
        sa.Column("signing_key", sa.LargeBinary(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("not_after", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("terms_id", "version", name="uq_consents_terms_version"),
    )
    with op.batch_alter_table("consents", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_consents_citizen_id"), ["citizen_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_consents_client_id"), ["client_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_consents_department_id"), ["department_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_consents_not_after"), ["not_after"], unique=False)
        batch_op.create_index(batch_op.f("ix_consents_request_id"), ["request_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_consents_terms_id"), ["terms_id"], unique=False)

    op.create_table(
        "departments",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("name_es", sa.String(length=200), nullable=False),
        sa.Column("contact_email", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "request_declines",
        sa.Column("citizen_id", sa.String(length=32), nullable=False),
        sa.Column("request_id", sa.String(length=32), nullable=False),
        sa.Column("declined_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("citizen_id", "request_id"),
    )
    op.create_table(
        "consent_events",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("consent_id", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("event_json", sa.String(), nullable=False),
        sa.Column("signature", sa.LargeBinary(), nullable=True),
        sa.ForeignKeyConstraint(
            ["consent_id"],
            ["consents.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("consent_events", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_consent_events_consent_id"), ["consent_id"], unique=False
        )

    op.create_table(
        "data_requests",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("department_id", sa.String(length=64), nullable=False),
        sa.Column("title", sa.String(length=300), nullable=False),
        sa.Column("request_json", sa.String(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closes_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["department_id"],
            ["departments.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("data_requests", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_data_requests_department_id"), ["department_id"], unique=False
        )

    op.create_table(
        "key_grants",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("consent_id", sa.String(length=32), nullable=False),
        sa.Column("stream_id", sa.String(length=32), nullable=False),
        sa.Column("stream_key_id", sa.String(length=32), nullable=False),
        sa.Column("grantee", sa.String(length=32), nullable=False),
        sa.Column("sealed_key", sa.LargeBinary(), nullable=False),
        sa.Column("terms_sha256", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["consent_id"],
            ["consents.id"],
        ),
        sa.ForeignKeyConstraint(
            ["stream_id"],
            ["streams.id"],
        ),
        sa.ForeignKeyConstraint(
            ["stream_key_id"],
            ["stream_keys.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("key_grants", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_key_grants_consent_id"), ["consent_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_key_grants_grantee"), ["grantee"], unique=False)
        batch_op.create_index(batch_op.f("ix_key_grants_stream_id"), ["stream_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("key_grants", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_key_grants_stream_id"))
        batch_op.drop_index(batch_op.f("ix_key_grants_grantee"))
        batch_op.drop_index(batch_op.f("ix_key_grants_consent_id"))

    op.drop_table("key_grants")
    with op.batch_alter_table("data_requests", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_data_requests_department_id"))

    op.drop_table("data_requests")
    with op.batch_alter_table("consent_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_consent_events_consent_id"))

    op.drop_table("consent_events")
    op.drop_table("request_declines")
    op.drop_table("departments")
    with op.batch_alter_table("consents", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_consents_terms_id"))
        batch_op.drop_index(batch_op.f("ix_consents_request_id"))
        batch_op.drop_index(batch_op.f("ix_consents_not_after"))
        batch_op.drop_index(batch_op.f("ix_consents_department_id"))
        batch_op.drop_index(batch_op.f("ix_consents_client_id"))
        batch_op.drop_index(batch_op.f("ix_consents_citizen_id"))

    op.drop_table("consents")
