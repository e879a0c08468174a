"""One typed settings object, read from the environment and `.env`.

Every variable of `.env.example` is a field here. A bad value stops start-up with
one line per bad variable naming it and the allowed range (`SettingsError`), never
a stack trace later.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from typing import Annotated, Any, Literal
from urllib.parse import urlparse

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

REAL_GAMMA_HOST = "gamma-api.polymarket.com"
#: The real Gamma API must never be polled faster than this.
REAL_GAMMA_MIN_POLL_SECONDS = 30.0
EMBEDDED_REDIS = "embedded"


class SettingsError(ValueError):
    """Raised when a setting has a bad value; `str()` is the user-facing message."""


def _check_url(value: str, schemes: tuple[str, ...]) -> str:
    """A URL needs one of `schemes` AND a host: 'http://:8080' or 'wss://user@' name none."""
    parsed = urlparse(value)
    if parsed.scheme not in schemes or not parsed.hostname:
        raise ValueError(f"must be a URL starting with {' or '.join(s + '://' for s in schemes)} and naming a host")
    return value.rstrip("/")


class Settings(BaseSettings):
    """All of polyalphascan's configuration. Field names map to upper-case env vars."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        case_sensitive=False,
        extra="ignore",
        validate_default=True,
    )

    # --- LLM ---------------------------------------------------------------------------
    llm_max_concurrent: int = Field(5, ge=1, le=100, description="LLM requests in flight per process")
    llm_batch_size: int = Field(10, ge=1, le=100, description="target groups per LLM batch")
    openrouter_api_key: SecretStr | None = Field(None, description="API key; empty = rule implications only")
    llm_base_url: str = Field("https://openrouter.ai/api/v1", description="OpenAI-compatible base URL")
    llm_model: str = Field("openai/gpt-4o-mini", min_length=1, description="model slug")
    llm_timeout_seconds: float = Field(60.0, gt=0, le=600, description="per-attempt timeout")
    llm_max_attempts: int = Field(6, ge=1, le=50, description="attempts per group before it is reported failed")
    llm_candidates_per_target: int = Field(40, ge=1, le=1000, description="candidate groups per prompt")
    llm_max_tokens: int = Field(2048, ge=64, le=65_536, description="max_tokens of each LLM request (reply length)")
    llm_cover_probability: float = Field(0.98, gt=0, le=1, description="ceiling of P(cover fires) of an LLM cover; "
                                         "each is priced at this × its implication's verified confidence")
    llm_max_implications_per_target: int = Field(8, ge=1, le=100, description="an LLM answer claiming more "
                                                 "implications for one target is rejected whole")

    # --- CLOB WebSocket ------------------------------------------------------------------
    ws_max_connections: int = Field(10, ge=1, le=100, description="WebSocket shards (connections)")
    ws_tokens_per_connection: int = Field(500, ge=1, le=500, description="tokens per connection")
    ws_ping_interval_seconds: float = Field(10.0, gt=0, le=60, description="text PING interval")
    ws_stall_timeout_seconds: float = Field(30.0, gt=0, le=3600, description="no data this long => resync")
    price_queue_max_size: int = Field(10_000, ge=1, le=10_000_000, description="bounded queue per shard")
    clob_ws_url: str = Field("wss://ws-subscriptions-clob.polymarket.com/ws/market")

    # --- Gamma polling -------------------------------------------------------------------
    gamma_api_url: str = Field("https://gamma-api.polymarket.com")
    poll_interval_seconds: float = Field(30.0, gt=0, le=86_400, description="seconds between polls")
    enable_incremental_update: bool = True
    full_reconcile_every: int = Field(10, ge=1, le=100_000, description="full pass every K polls")
    polymarket_tag: Annotated[list[str], NoDecode] = Field(default_factory=list)

    # --- Redis -----------------------------------------------------------------------------
    redis_url: str = Field(EMBEDDED_REDIS, description="redis://, rediss://, unix:// or 'embedded'")
    redis_key_prefix: str = Field("pas", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")
    enable_redis_cache: bool = False
    cache_ttl_seconds: int = Field(3600, ge=1, le=30 * 86_400)
    llm_cache_max_entries: int = Field(100_000, ge=1, le=10_000_000, description="in-process cache bound")
    stream_max_len: int = Field(100_000, ge=100, le=100_000_000, description="change stream MAXLEN")

    # --- Portfolios ------------------------------------------------------------------------
    min_coverage: float = Field(0.85, ge=0, le=1)
    max_cost: float = Field(1.5, gt=0, le=100, description="drop portfolios costing more")
    join_shards: int = Field(0, ge=0, le=4096, description=(
        "keys of the price join; 0 = one per worker of a one-worker process, else 4 per worker of this process;"
        " in a multi-process cluster set at least the workers in total"))

    # --- Runtime -----------------------------------------------------------------------------
    monitor_host: str = "127.0.0.1"
    monitor_port: int = Field(8000, ge=0, le=65_535)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["console", "json"] = "console"
    recovery_dir: str | None = None
    snapshot_interval_seconds: int = Field(5, ge=1, le=3600)

    # --- Opportunity history and alerts (issue 18; the sinks themselves: polyalphascan/alert_settings.py) ---
    history_enabled: bool = Field(True, description="record each opportunity's life (runs with the scanner)")
    history_retention_hours: float = Field(168.0, gt=0, le=24 * 366, description="keep ended lives this long")
    history_window_minutes: float = Field(60.0, gt=0, le=24 * 60, description="window of the live figures")
    alert_market_url: str = Field("", description="link base for a market without a slug in the data "
                                  "(empty: GAMMA_API_URL/markets)")

    @field_validator("polymarket_tag", mode="before")
    @classmethod
    def _split_tags(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [t.strip() for t in value.split(",") if t.strip()]
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("llm_base_url", "gamma_api_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        return _check_url(value, ("http", "https"))

    @field_validator("clob_ws_url")
    @classmethod
    def _ws_url(cls, value: str) -> str:
        return _check_url(value, ("ws", "wss"))

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str) -> str:
        if value.strip() == "" or value.strip().lower() == EMBEDDED_REDIS:
            return EMBEDDED_REDIS
        parsed = urlparse(value)
        if parsed.scheme == "unix" and parsed.path:
            return value
        if parsed.scheme in ("redis", "rediss") and parsed.hostname:
            return value
        raise ValueError("must be 'embedded', redis://host:port/db, rediss://... or unix:///path")

    @field_validator("openrouter_api_key", mode="before")
    @classmethod
    def _empty_key(cls, value: Any) -> Any:
        return None if isinstance(value, str) and value.strip() == "" else value

    @model_validator(mode="after")
    def _real_gamma_pace(self) -> "Settings":
        if urlparse(self.gamma_api_url).hostname == REAL_GAMMA_HOST and (
            self.poll_interval_seconds < REAL_GAMMA_MIN_POLL_SECONDS
        ):
            raise ValueError(
                f"POLL_INTERVAL_SECONDS={self.poll_interval_seconds:g} is invalid: the real Gamma API "
                f"must not be polled faster than every {REAL_GAMMA_MIN_POLL_SECONDS:g} s "
                "(only local stand-ins may go faster)"
            )
        return self

    @model_validator(mode="after")
    def _no_key_over_plain_http(self) -> "Settings":
        parsed = urlparse(self.llm_base_url)
        if self.openrouter_api_key is not None and parsed.scheme == "http" and not _is_loopback(parsed.hostname):
            raise ValueError(
                f"LLM_BASE_URL={self.llm_base_url!r} is invalid: with OPENROUTER_API_KEY set, a remote LLM endpoint "
                "must use https:// (plain http:// only to loopback), or the key travels in clear text"
            )
        return self

    # --- derived -----------------------------------------------------------------------------
    @property
    def embedded_redis(self) -> bool:
        return self.redis_url == EMBEDDED_REDIS

    @property
    def llm_enabled(self) -> bool:
        return self.openrouter_api_key is not None

    @property
    def max_tokens_subscribed(self) -> int:
        return self.ws_max_connections * self.ws_tokens_per_connection


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _masked(value: Any) -> Any:
    """A URL-like value with its password replaced by '***' (error lines never show secrets)."""
    if not isinstance(value, str) or "@" not in value:
        return value
    try:
        parsed = urlparse(value)
        password = parsed.password
    except ValueError:
        return "<unreadable value hidden>"
    if not password:
        return value
    return value.replace(f":{password}@", ":***@")  # every copy: an error line never shows it


def _describe(err: dict[str, Any]) -> str:
    """One line for one validation error: the variable, its value (secrets masked) and the
    allowed range."""
    loc = err.get("loc") or ()
    name = str(loc[0]).upper() if loc else ""
    value = _masked(err.get("input"))
    ctx = err.get("ctx") or {}
    kind = err.get("type", "")
    if kind in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
        field = Settings.model_fields[str(loc[0])]
        lo = hi = None
        lo_incl = hi_incl = True
        for m in field.metadata:
            if getattr(m, "ge", None) is not None:
                lo = m.ge
            if getattr(m, "gt", None) is not None:
                lo, lo_incl = m.gt, False
            if getattr(m, "le", None) is not None:
                hi = m.le
            if getattr(m, "lt", None) is not None:
                hi, hi_incl = m.lt, False
        lo_s = f"{'>=' if lo_incl else '>'} {lo}" if lo is not None else ""
        hi_s = f"{'<=' if hi_incl else '<'} {hi}" if hi is not None else ""
        rng = " and ".join(s for s in (lo_s, hi_s) if s)
        return f"{name}={value!r} is invalid: must be {rng}"
    if kind in ("int_parsing", "int_type", "int_from_float"):
        return f"{name}={value!r} is invalid: must be a whole number"
    if kind in ("float_parsing", "float_type"):
        return f"{name}={value!r} is invalid: must be a number"
    if kind in ("bool_parsing", "bool_type"):
        return f"{name}={value!r} is invalid: must be true or false"
    if kind == "literal_error":
        return f"{name}={value!r} is invalid: must be one of {ctx.get('expected')}"
    if kind == "string_pattern_mismatch":
        return f"{name}={value!r} is invalid: may hold only letters, digits, '_', '-' and '.'"
    msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
    if not name:  # model-level validator: the message names the variable itself
        return msg
    return f"{name}={value!r} is invalid: {msg}"


def load_settings(**overrides: Any) -> Settings:
    """Read settings from the environment and `.env`; raise `SettingsError` with clear lines."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        lines = [_describe(e) for e in exc.errors(include_url=False)]
        raise SettingsError("\n".join(lines)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Process-wide settings (read once)."""
    return load_settings()
