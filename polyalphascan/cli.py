"""`polyalphascan` command line.

    polyalphascan demo        stand-ins + embedded Redis + the flow, live opportunities printed
    polyalphascan run         the scanner flow against the configured endpoints
    polyalphascan standins    start local stand-ins (Gamma, CLOB WS, OpenAI-compatible) and print URLs
    polyalphascan top         live table of the best portfolios from Redis
    polyalphascan monitor     print the monitoring JSON (pipeline + cache metrics)
    polyalphascan serve-monitor   HTTP server for GET /monitoring/performance
"""

from __future__ import annotations

import sys
from typing import NoReturn

import typer

from polyalphascan.logs import configure_logging
from polyalphascan.settings import Settings, SettingsError, load_settings

app = typer.Typer(
    name="polyalphascan",
    help="Real-time scanner for hedged and arbitrage (covering) portfolios on Polymarket.",
    no_args_is_help=True,
    add_completion=False,
)


def fail(message: str, code: int = 2) -> NoReturn:
    typer.echo(f"polyalphascan: {message}", err=True)
    raise typer.Exit(code)


def startup_settings() -> Settings:
    """Load and validate settings; a bad value is one clear line per variable, exit 2."""
    try:
        settings = load_settings()
    except SettingsError as exc:
        fail(f"invalid configuration:\n{exc}")
    configure_logging(settings.log_level, settings.log_format)
    return settings


def not_yet(what: str) -> NoReturn:
    fail(f"'{what}' is not available yet in this build", code=3)


@app.command()
def demo(
    events: int = typer.Option(300, help="events in the generated market universe"),
    seed: int = typer.Option(7, help="universe seed (same seed, same universe)"),
    duration: float = typer.Option(0, help="stop after this many seconds (0 = until Ctrl-C)"),
) -> None:
    """Run everything locally: stand-ins, embedded Redis and the flow; print live opportunities."""
    settings = startup_settings()
    from polyalphascan.demo import run_demo

    run_demo(settings, events=events, seed=seed, duration=duration)


@app.command()
def run(
    workers: int = typer.Option(1, "-w", "--workers", help="worker threads per process"),
) -> None:
    """Run the scanner flow against the configured Gamma / CLOB / LLM endpoints."""
    startup_settings()
    not_yet("run")


@app.command()
def standins() -> None:
    """Start the local stand-ins on free ports and print their URLs."""
    startup_settings()
    not_yet("standins")


@app.command()
def top() -> None:
    """Show the top portfolios live in the terminal (reads Redis)."""
    startup_settings()
    not_yet("top")


@app.command()
def monitor() -> None:
    """Print the monitoring JSON (pipeline and cache metrics read from Redis)."""
    startup_settings()
    not_yet("monitor")


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
