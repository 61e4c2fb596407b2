"""Why a release left a counted consent out: ``release_contributions.left_out``.

A released query's statistics leave out a consent that its size check counted either because the
consent's minimum group size was above the noisy count (``group_size``) or because the citizen
withdrew or changed the consent after the gate admitted it and before the data was read
(``consent_changed``). The citizen is told which. Rows written before this revision are left
``NULL``: the only reason then was the group size, and the notice says so when it is unset.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-22 10:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("release_contributions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("left_out", sa.String(length=16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("release_contributions", schema=None) as batch_op:
        batch_op.drop_column("left_out")
