"""The environment of a scanner process run by a test (`polyalphascan run` in a subprocess)."""

from __future__ import annotations

import os

from standins.launcher import StandIns


def flow_env(standins: StandIns, redis_url: str, prefix: str, **settings: str) -> dict[str, str]:
    """This process's environment without the caller's scanner settings, pointed at the
    stand-ins and at `redis_url` under `prefix`, plus `settings` (NAME=value)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "LLM_", "WS_", "POLL_"))}
    env.update({k.upper(): str(v) for k, v in standins.settings_overrides().items()})
    env.update(REDIS_URL=redis_url, REDIS_KEY_PREFIX=prefix, **settings)
    return env
