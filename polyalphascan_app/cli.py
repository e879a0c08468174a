"""`polyalphascan` command line.

    polyalphascan demo        stand-ins + embedded Redis + the flow, live opportunities printed
    polyalphascan run         the scanner flow against the configured endpoints
    polyalphascan standins    start local stand-ins (Gamma, CLOB WS, OpenAI-compatible) and print URLs
    polyalphascan top         live table of the best portfolios from Redis
    polyalphascan monitor     print the monitoring JSON (pipeline + cache metrics)
    polyalphascan serve-monitor   HTTP server for GET /monitoring/performance
    polyalphascan alerts      deliver opportunities to the sinks of .env (Telegram, Discord, webhooks)
    polyalphascan history     opportunity lives: summary table, CSV export
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


@app.command()
def demo(
    events: int = typer.Option(300, help="events in the generated market universe"),
    seed: int = typer.Option(7, help="universe seed (same seed, same universe)"),
    duration: float = typer.Option(0, help="stop after this many seconds (0 = until Ctrl-C)"),
) -> None:
    """Run everything locally: stand-ins, embedded Redis and the flow; print live opportunities."""
    settings = startup_settings()
    from polyalphascan_app.demo import run_demo

    run_demo(settings, events=events, seed=seed, duration=duration)


@app.command()
def run(
    workers: int = typer.Option(1, "-w", "--workers", min=1, help="worker threads in this process"),
    max_workers: int = typer.Option(0, help="most workers you will ever run (sizes a new RECOVERY_DIR)"),
) -> None:
    """Run the scanner flow against the configured Gamma / CLOB / LLM endpoints until stopped."""
    settings = startup_settings()
    from flows.runtime import run_flow, start_runtime
    from flows.scanner import build_flow

    runtime = start_runtime(settings)
    run_flow(build_flow(settings, runtime.redis_url, scope=runtime.scope, workers=workers), runtime,
             workers=workers, max_workers=max_workers or None)


def _redis_url(settings: Settings, override: str | None) -> str:
    url = override or settings.redis_url
    if url == "embedded":
        fail("this command reads an existing Redis: pass --redis-url (the demo prints it) or set REDIS_URL")
    return url


@app.command()
def standins(
    events: int = typer.Option(300, help="events in the generated market universe"),
    seed: int = typer.Option(7, help="universe seed"),
    rate: float = typer.Option(200.0, help="price moves per second on the CLOB stand-in"),
    only: str = typer.Option("gamma,clob,llm", help="comma list of stand-ins to start"),
    activity: float = typer.Option(0.0, help="seconds between market lifecycle actions (0 = none)"),
) -> None:
    """Start the local stand-ins (Gamma REST, CLOB WebSocket, OpenAI-compatible) and print their URLs."""
    startup_settings()
    from polyalphascan.scope import FlowScope
    from standins.launcher import MarketActivity, StandIns

    chosen = {s.strip() for s in only.split(",") if s.strip()}
    unknown = chosen - {"gamma", "clob", "llm"}
    if unknown:
        fail(f"--only: unknown stand-in(s) {sorted(unknown)}; choose from gamma, clob, llm")
    scope = FlowScope()
    scope.install_signal_handlers()
    with StandIns(seed=seed, n_events=events, gamma="gamma" in chosen, clob="clob" in chosen,
                  llm="llm" in chosen, clob_rate=rate) as s:
        for name, url in s.urls().items():
            typer.echo(f"{name}: {url}")
        for key, value in s.settings_overrides().items():
            typer.echo(f"export {key.upper()}={value}")
        mover = MarketActivity(s, interval=activity).start() if activity > 0 else None
        while not scope.stop.wait(0.5):
            pass
        if mover:
            mover.stop()


@app.command()
def top(
    redis_url: str = typer.Option(None, "--redis-url", help="Redis to read (default: REDIS_URL)"),
    n: int = typer.Option(20, "-n", help="rows"),
    profitable: bool = typer.Option(False, "--profitable", help="only portfolios with profit > 0"),
    once: bool = typer.Option(False, "--once", help="print one table and exit"),
    interval: float = typer.Option(1.0, help="refresh interval in seconds"),
) -> None:
    """Show the top portfolios live in the terminal (reads Redis)."""
    import time

    import redis
    from rich.console import Console
    from rich.live import Live

    from polyalphascan_app.history import figures_line, read_figures
    from polyalphascan_app.top_table import render_table, top_portfolios

    settings = startup_settings()
    client = redis.Redis.from_url(_redis_url(settings, redis_url))
    prefix = settings.redis_key_prefix

    def table():  # type: ignore[no-untyped-def]
        t = render_table(top_portfolios(client, prefix, n, profitable_only=profitable))
        t.caption = figures_line(read_figures(client, prefix))  # issue 18: live history figures
        return t

    try:
        if once:
            Console(width=200).print(table())
            return
        with Live(table(), refresh_per_second=4, screen=False) as live:
            while True:
                time.sleep(interval)
                live.update(table())
    except redis.RedisError as exc:
        fail(f"cannot read Redis: {exc}")
    except KeyboardInterrupt:
        pass


@app.command()
def monitor(
    redis_url: str = typer.Option(None, "--redis-url", help="Redis to read (default: REDIS_URL)"),
    url: str = typer.Option(None, "--url", help="ask a running monitoring server instead of Redis"),
) -> None:
    """Print the monitoring JSON (pipeline and cache metrics read from Redis)."""
    import orjson

    settings = startup_settings()
    if url:
        import httpx

        try:
            report = httpx.get(url.rstrip("/") + "/monitoring/performance", timeout=5).json()
        except httpx.HTTPError as exc:
            fail(f"cannot reach {url}: {exc}")
    else:
        import redis

        from polyalphascan_app.monitoring import performance_report

        try:
            report = performance_report(redis.Redis.from_url(_redis_url(settings, redis_url)), settings.redis_key_prefix)
        except redis.RedisError as exc:
            fail(f"cannot read Redis: {exc}")
    typer.echo(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())


@app.command("serve-monitor")
def serve_monitor(
    redis_url: str = typer.Option(None, "--redis-url", help="Redis to read (default: REDIS_URL)"),
) -> None:
    """Serve GET /monitoring/performance on MONITOR_HOST:MONITOR_PORT."""
    from polyalphascan.scope import FlowScope
    from polyalphascan_app.monitoring import MonitoringServer

    settings = startup_settings()
    scope = FlowScope()
    scope.install_signal_handlers()
    with MonitoringServer(_redis_url(settings, redis_url), settings.redis_key_prefix,
                          settings.monitor_host, settings.monitor_port) as server:
        typer.echo(f"monitoring: {server.url}/monitoring/performance")
        while not scope.stop.wait(0.5):
            pass


# --- issue 18: alert delivery and opportunity history ------------------------------------------
@app.command()
def alerts(
    redis_url: str = typer.Option(None, "--redis-url", help="Redis to read (default: REDIS_URL)"),
) -> None:
    """Deliver opportunities to the sinks ALERT_SINKS names (Telegram, Discord, webhooks) until stopped."""
    from polyalphascan.alert_settings import load_sinks
    from polyalphascan_app.alerts import run_alerts

    settings = startup_settings()
    try:
        sinks = load_sinks()
    except SettingsError as exc:
        fail(f"invalid configuration:\n{exc}")
    if not sinks:
        fail("no alert sink configured: set ALERT_SINKS and ALERT_<NAME>_TYPE etc. (see .env.example)")
    run_alerts(settings, _redis_url(settings, redis_url), sinks)


@app.command()
def history(
    redis_url: str = typer.Option(None, "--redis-url", help="Redis to read (default: REDIS_URL)"),
    since: str = typer.Option(None, "--since", help="start: ISO date/time, epoch, or -2h / -30m / -7d"),
    until: str = typer.Option(None, "--until", help="end: same forms"),
    csv_file: str = typer.Option(None, "--csv", help="write every life in the range to this CSV file ('-': stdout)"),
) -> None:
    """Opportunity history: a summary table by kind, or a CSV export of every life in a time range."""
    import redis
    from rich.console import Console

    from polyalphascan_app.history import figures_line, parse_time, read_figures, read_lives, summary_table, write_csv

    settings = startup_settings()
    try:
        since_ms, until_ms = parse_time(since), parse_time(until)
    except ValueError as exc:
        fail(f"--since/--until: {exc}")
    client = redis.Redis.from_url(_redis_url(settings, redis_url))
    prefix = settings.redis_key_prefix
    try:
        lives = read_lives(client, prefix, since_ms, until_ms)
        fig = read_figures(client, prefix)
    except redis.RedisError as exc:
        fail(f"cannot read Redis: {exc}")
    if csv_file:
        if csv_file == "-":
            write_csv(lives, sys.stdout)
        else:
            with open(csv_file, "w", newline="", encoding="utf-8") as out:
                n = write_csv(lives, out)
            typer.echo(f"{n} lives written to {csv_file}")
        return
    console = Console(width=160)
    console.print(summary_table(lives, f"opportunity lives: {len(lives)}"))
    if fig:
        console.print(figures_line(fig), soft_wrap=True)


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
