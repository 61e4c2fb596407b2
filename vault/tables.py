"""Every module that defines tables, imported in one place so that migrations and
``SQLModel.metadata`` see the whole schema. Add a new table module here."""

from __future__ import annotations

import vault.consent_models
import vault.models
import vault.oauth.models  # noqa: F401
