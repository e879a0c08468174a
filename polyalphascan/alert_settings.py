"""Alert sinks, configured in the environment / `.env`, any number of them.

`ALERT_SINKS=phone,ops` names the sinks; each sink NAME reads the variables
`ALERT_<NAME>_<FIELD>` (the fields of `SinkSettings`), e.g.

    ALERT_SINKS=phone,ops
    ALERT_PHONE_TYPE=telegram
    ALERT_PHONE_BOT_TOKEN=123456:ABC...
    ALERT_PHONE_CHAT_ID=-100123456
    ALERT_PHONE_MIN_NET_PROFIT=0.5
    ALERT_OPS_TYPE=discord
    ALERT_OPS_URL=https://discord.com/api/webhooks/ID/TOKEN
    ALERT_OPS_GUARANTEED_ONLY=false

Bot tokens and webhook URLs (which embed a token) are `SecretStr`: shown as `**********`
in logs, reprs and error lines. A bad value stops start-up with one line per variable
(`SettingsError`), like the scanner's own settings.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from polyalphascan.alert_policy import SinkFilter
from polyalphascan.settings import SettingsError, _check_url

SINK_NAME = re.compile(r"^[a-z0-9_]{1,32}$")
SECRET_FIELDS = frozenset({"url", "bot_token"})
#: per sink type: (sends per second, burst) when the sink does not set them. Telegram asks bots
#: to stay near one message per second in a chat; Discord webhooks allow about 5 per 2 s and
#: 30 per minute per channel (its headers pace us further when they say so).
DEFAULT_RATE = {"telegram": (1.0, 1), "discord": (0.5, 2), "webhook": (5.0, 5)}


class SinkSettings(BaseSettings):
    """One sink. Field `x` is the variable `ALERT_<NAME>_X`."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", case_sensitive=False,
                                      extra="ignore", validate_default=True)

    name: str = "sink"
    type: Literal["webhook", "telegram", "discord"]
    url: SecretStr | None = Field(None, description="webhook URL (generic webhook, Discord)")
    bot_token: SecretStr | None = Field(None, description="Telegram bot token")
    chat_id: str | None = Field(None, description="Telegram chat id or @channel")
    api_url: str = Field("https://api.telegram.org", description="Telegram Bot API base URL")
    kinds: Annotated[list[str], NoDecode] = Field(default_factory=list, description="empty = every kind")
    guaranteed_only: bool = Field(True, description="only rule (guaranteed) opportunities, no LLM bets")
    min_net_profit: float = Field(0.0, ge=0, le=1e9)
    min_size: float = Field(0.0, ge=0, le=1e12)
    rate_per_second: float | None = Field(None, gt=0, le=1000)
    burst: int | None = Field(None, ge=1, le=1000)
    max_attempts: int = Field(5, ge=1, le=100, description="attempts per send before the sink backs off")
    timeout_seconds: float = Field(10.0, gt=0, le=300)
    max_age_seconds: float = Field(600.0, gt=0, le=86_400, description="older changes are not sent (stale)")

    @field_validator("kinds", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [k.strip() for k in value.split(",") if k.strip()]
        return value

    @field_validator("api_url")
    @classmethod
    def _http(cls, value: str) -> str:
        return _check_url(value, ("http", "https"))

    @field_validator("url")
    @classmethod
    def _secret_http(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            _check_url(value.get_secret_value(), ("http", "https"))
        return value

    @model_validator(mode="after")
    def _complete(self) -> "SinkSettings":
        if self.type == "telegram":
            if self.bot_token is None or not self.chat_id:
                raise ValueError("a telegram sink needs BOT_TOKEN and CHAT_ID")
        elif self.url is None:
            raise ValueError(f"a {self.type} sink needs URL")
        return self

    @property
    def filter(self) -> SinkFilter:
        return SinkFilter(frozenset(self.kinds), self.guaranteed_only, self.min_net_profit, self.min_size)

    @property
    def rate(self) -> tuple[float, int]:
        rate, burst = DEFAULT_RATE[self.type]
        return (self.rate_per_second or rate, self.burst or burst)

    def endpoint(self) -> str:
        """Where requests go (holds the secret: never log it)."""
        if self.type == "telegram":
            assert self.bot_token is not None
            return f"{self.api_url}/bot{self.bot_token.get_secret_value()}"
        assert self.url is not None
        return self.url.get_secret_value()


class _SinkNames(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", case_sensitive=False,
                                      extra="ignore")
    alert_sinks: Annotated[list[str], NoDecode] = Field(default_factory=list)

    @field_validator("alert_sinks", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [k.strip().lower() for k in value.split(",") if k.strip()]
        return value


def _line(prefix: str, err: dict[str, Any]) -> str:
    loc = err.get("loc") or ()
    field = str(loc[0]) if loc else ""
    msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
    if not field:
        return f"{prefix}*: {msg}"
    name = f"{prefix}{field.upper()}"
    if field in SECRET_FIELDS:
        return f"{name} is invalid: {msg}"  # never the value
    return f"{name}={err.get('input')!r} is invalid: {msg}"


def load_sinks(**env_overrides: dict[str, Any]) -> list[SinkSettings]:
    """Every sink `ALERT_SINKS` names (tests pass `env_overrides`: {name: {field: value}})."""
    names = list(env_overrides) if env_overrides else _SinkNames().alert_sinks
    errors: list[str] = []
    sinks: list[SinkSettings] = []
    for name in dict.fromkeys(names):
        prefix = f"ALERT_{name.upper()}_"
        if not SINK_NAME.match(name):
            errors.append(f"ALERT_SINKS: sink name {name!r} may hold only a-z, 0-9 and '_' (at most 32)")
            continue
        cls = type(f"Sink_{name}", (SinkSettings,), {"model_config": {**SinkSettings.model_config,
                                                                      "env_prefix": prefix}})
        try:
            sinks.append(cls(name=name, **env_overrides.get(name, {})))
        except ValidationError as exc:
            errors.extend(_line(prefix, e) for e in exc.errors(include_url=False))
    if errors:
        raise SettingsError("\n".join(errors))
    return sinks
