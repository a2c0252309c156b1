"""The ``rserver`` command line (click).

    rserver run -c FILE [--check] [--log-format human|json] [--log-level LEVEL]

``run`` stays in the foreground until SIGTERM/SIGINT (docs/sessions.md). ``--check`` only
validates the configuration: exit 0 with a one-line summary, or exit 2 with the error
(``file: field: expectation``) on stderr. A bad configuration never starts anything.
The group is meant to grow (show / neighbor / reload, over the control socket).
"""
from __future__ import annotations

import sys
from typing import Optional

import click

from .config import Config, ConfigError, load

__all__ = ["main", "cli", "summary", "EXIT_CONFIG"]

EXIT_CONFIG = 2


def summary(cfg: Config) -> str:
    """One line describing a loaded configuration."""
    g = cfg.global_
    workers = g.session_workers or len(cfg.neighbors)
    workers = min(workers, len(cfg.neighbors))
    listen = ", ".join(f"[{a}]:{g.port}" if ":" in a else f"{a}:{g.port}" for a in g.listen)
    return (f"{cfg.source}: ok: AS{g.local_as} router-id {g.router_id}, listen {listen}, "
            f"{len(cfg.neighbors)} neighbor(s), {workers} session worker process(es)")


def _load_or_exit(path: str) -> Config:
    try:
        return load(path)
    except ConfigError as e:
        click.echo(f"rserver: configuration error: {e}", err=True)
        sys.exit(EXIT_CONFIG)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="rserver", prog_name="rserver")
def cli() -> None:
    """rserver: a BGP route server for Internet Exchange Points."""


@cli.command()
@click.option("-c", "--config", "config_path", required=True, type=click.Path(dir_okay=False),
              help="Configuration file (TOML).")
@click.option("--check", is_flag=True, help="Validate the configuration and exit (0: valid, 2: invalid).")
@click.option("--log-format", type=click.Choice(["human", "json"]), default=None,
              help="Log line format (default: the config's global.log_format).")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default=None,
              help="Log level (default: the config's global.log_level).")
def run(config_path: str, check: bool, log_format: Optional[str], log_level: Optional[str]) -> None:
    """Run the route server in the foreground until SIGTERM or SIGINT."""
    cfg = _load_or_exit(config_path)
    if check:
        click.echo(summary(cfg))
        return
    from .log import configure
    from .supervisor.main import Supervisor

    fmt = log_format or cfg.global_.log_format
    level = log_level or cfg.global_.log_level
    configure(fmt, level)
    sup = Supervisor(cfg, log_format=fmt, log_level=level)
    sys.exit(sup.run())


def main(argv: Optional[list[str]] = None) -> None:
    """Console-script entry point (``rserver = "rserver.cli:main"``)."""
    cli.main(args=argv, prog_name="rserver")


if __name__ == "__main__":
    main()
