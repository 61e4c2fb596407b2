"""One-time recovery codes: 160 random bits shown once as eight groups of base32 characters.

The root secret is also wrapped under the code. Because the code carries 160 bits of entropy (beyond
any guessing), it is wrapped with the cheapest Argon2id cost; the passphrase, which a person chose,
gets the configured cost.
"""

from __future__ import annotations

import base64
import secrets

_BYTES = 20


def new_recovery_code() -> str:
    text = base64.b32encode(secrets.token_bytes(_BYTES)).decode("ascii")
    return "-".join(text[i : i + 4] for i in range(0, len(text), 4))


def normalise_recovery_code(code: str) -> str:
    """Accept the code as typed: any case, with or without dashes and spaces."""
    cleaned = "".join(ch for ch in code.upper() if ch.isalnum())
    return "-".join(cleaned[i : i + 4] for i in range(0, len(cleaned), 4))
