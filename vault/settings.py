"""Settings, read from the environment when asked for (never at import time).

Every variable is documented in ``docs/configuration.md``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

KDF_PROFILES = ("min", "interactive", "moderate", "sensitive")


class SettingsError(ValueError):
    """An environment variable holds a value we cannot use."""


def _int(env: dict[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise SettingsError(f"{name}={raw!r}: expected a whole number") from exc
    if value < minimum:
        raise SettingsError(f"{name}={raw!r}: must be at least {minimum}")
    return value


@dataclass(frozen=True)
class Settings:
    data_dir: Path = Path("var")
    database_url: str = ""
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    demo_citizens: int = 1000
    kdf_profile: str = "interactive"
    access_token_ttl_seconds: int = 3600
    max_body_bytes: int = 16 * 1024 * 1024
    body_read_timeout_seconds: int = 60
    max_records_per_batch: int = 200_000
    login_free_failures: int = 5
    login_max_lockout_seconds: int = 900
    compact_min_chunks: int = 16
    compact_small_chunk_records: int = 1000
    expiry_interval_seconds: int = 60
    chunk_key_reuse_seconds: int = 300
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'civic.db').as_posix()}"

    @property
    def keys_dir(self) -> Path:
        return self.data_dir / "keys"

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if environ is None else environ)
        profile = env.get("CIVIC_KDF_PROFILE", "interactive") or "interactive"
        if profile not in KDF_PROFILES:
            raise SettingsError(
                f"CIVIC_KDF_PROFILE={profile!r}: expected one of {', '.join(KDF_PROFILES)}"
            )
        return cls(
            data_dir=Path(env.get("CIVIC_DATA_DIR") or "var"),
            database_url=env.get("CIVIC_DATABASE_URL", ""),
            host=env.get("CIVIC_HOST") or "127.0.0.1",
            port=_int(env, "CIVIC_PORT", 8000, minimum=1),
            workers=_int(env, "CIVIC_WORKERS", 1, minimum=1),
            demo_citizens=_int(env, "CIVIC_DEMO_CITIZENS", 1000),
            kdf_profile=profile,
            access_token_ttl_seconds=_int(env, "CIVIC_ACCESS_TOKEN_TTL", 3600, minimum=60),
            max_body_bytes=_int(env, "CIVIC_MAX_BODY_BYTES", 16 * 1024 * 1024, minimum=1024),
            body_read_timeout_seconds=_int(env, "CIVIC_BODY_READ_TIMEOUT", 60, minimum=1),
            max_records_per_batch=_int(env, "CIVIC_MAX_RECORDS_PER_BATCH", 200_000, minimum=1),
            login_free_failures=_int(env, "CIVIC_LOGIN_FREE_FAILURES", 5, minimum=1),
            login_max_lockout_seconds=_int(env, "CIVIC_LOGIN_MAX_LOCKOUT", 900, minimum=1),
            compact_min_chunks=_int(env, "CIVIC_COMPACT_MIN_CHUNKS", 16, minimum=2),
            expiry_interval_seconds=_int(env, "CIVIC_EXPIRY_INTERVAL", 60, minimum=1),
            chunk_key_reuse_seconds=_int(env, "CIVIC_CHUNK_KEY_REUSE_SECONDS", 300),
            # Settings parsed where they are used: OAuth, aggregation, rate limits.
            extra={
                k: v
                for k, v in env.items()
                if k.startswith(("CIVIC_OAUTH_", "CIVIC_AGGREGATION_", "CIVIC_RATE_LIMIT_"))
            },
        )
