"""The ``poolsniff`` command line. Adapts arguments and output; the work is in the library."""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from poolsniff import __version__
from poolsniff.errors import EXIT_USAGE, CaptureError, ConfigError

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
FORMATS = ("table", "json", "jsonl", "csv")


class UsageFailure(click.UsageError):
    """A one-line error with exit status 2 (bad config, bad capture, bad option)."""

    exit_code = EXIT_USAGE

    def show(self, file: Any = None) -> None:
        click.echo(f"Error: {self.format_message()}", err=True)


@click.group(context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, "-V", "--version", prog_name="poolsniff")
def cli() -> None:
    """Find cryptocurrency mining in network traffic.

    poolsniff reads packet captures (or, later, a live interface), recognises
    every mining protocol dialect it knows (Stratum V1, EthereumStratum,
    eth-proxy, KawPow/Equihash/Kaspa, XMRig, Grin, HTTP getwork, browser
    WebSocket miners) and pool host names in DNS, TLS SNI and HTTP, and lists
    every host that mines with the packets that prove it.

    \b
    Examples:
      poolsniff scan capture.pcap
      poolsniff scan --format json -o result.json day1.pcapng day2.pcap.gz
      tcpdump -i eth1 -w - | poolsniff scan --format jsonl -
      poolsniff signatures list
    """


@cli.command(context_settings=CONTEXT_SETTINGS)
@click.argument("captures", nargs=-1, required=True, metavar="CAPTURE...")
@click.option("-f", "--format", "fmt", type=click.Choice(FORMATS), default="table",
              show_default=True,
              help="table: readable summary; json: one object {hosts, stats}; "
                   "jsonl: eve.json-style events for a SIEM; csv: one row per host.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True),
              help="Write the result to this file instead of standard output.")
@click.option("--signatures", "sigdir", type=click.Path(file_okay=False),
              help="Directory of pool signature YAML files (default: the bundled catalogue).")
@click.option("-j", "--jobs", type=click.IntRange(1, 256), default=None,
              help="Scan the captures on N cores, each as its own observation, and merge "
                   "(same answer for any N). Without --jobs, captures are read in order as "
                   "one observation: use that for a capture split into rotated files.")
@click.option("--max-flows", type=click.IntRange(1000, 50_000_000), default=None,
              help="Flows tracked at once (default 200000, under 1 KB each); past it the "
                   "oldest idle flows are finished first and counted as evicted.")
@click.option("--progress/--no-progress", default=None,
              help="Progress bar on stderr (default: only when stderr is a terminal).")
@click.option("--debug", is_flag=True, help="Show tracebacks for unexpected errors.")
def scan(captures: tuple[str, ...], fmt: str, output: str | None, sigdir: str | None,
         jobs: int | None, max_flows: int | None, progress: bool | None, debug: bool) -> None:
    """Scan pcap/pcapng captures and list every host that mines.

    CAPTURE is a pcap or pcapng file (µs or ns timestamps, any link type
    poolsniff decodes), optionally gzip-compressed; '-' reads standard input.
    Several captures are read in order as one observation.

    A host is 'mining' when it speaks a mining protocol or holds a session with
    a pool's stratum endpoint (learned from DNS or TLS SNI); 'suspect' for
    weaker signs (a DNS lookup of a pool name, a visit to a pool's web site).
    Hashrate comes from the accepted shares and the difficulty of their jobs,
    with an exact 95% Poisson interval, per algorithm.

    Exit status: 0 when the scan completed (miners found or not), 2 for usage,
    configuration or unreadable-capture errors, 1 for other failures.

    \b
    Examples:
      poolsniff scan pcaps/xmrig_compact.pcap
      poolsniff scan -f json capture.pcapng | jq '.hosts[] | {ip, verdict, coins}'
      poolsniff scan -f jsonl -o eve-mining.json /data/*.pcap.gz
    """
    from poolsniff.output import render
    from poolsniff.scan import scan_files
    from poolsniff.signatures import Catalogue

    try:
        cat = Catalogue.load(sigdir)
    except ConfigError as exc:
        raise UsageFailure(str(exc)) from exc
    for c in captures:
        if c != "-" and not os.path.isfile(c):
            raise UsageFailure(f"{c}: no such capture file")
    show = progress if progress is not None else sys.stderr.isatty()
    if jobs is not None and "-" in captures:
        raise UsageFailure("--jobs reads files; it cannot be used with '-' (stdin)")
    try:
        if jobs is not None:
            from poolsniff.scan import scan_parallel
            result = scan_parallel(list(captures), sigdir, jobs, max_flows)
        elif show and "-" not in captures:
            result = _scan_with_progress(captures, cat, max_flows)
        else:
            result = scan_files(captures, cat, max_flows=max_flows)
    except CaptureError as exc:
        raise UsageFailure(str(exc)) from exc
    except KeyboardInterrupt:
        raise click.Abort() from None
    except Exception as exc:  # noqa: BLE001 - a traceback is for --debug only
        if debug:
            raise
        raise click.ClickException(f"scan failed: {type(exc).__name__}: {exc} "
                                   "(run with --debug for details)") from exc
    for w in result.warnings:
        click.echo(f"Warning: {w}", err=True)
    if output:
        with open(output, "w", encoding="utf-8", newline="") as fh:
            render(result, fmt, fh)
    else:
        render(result, fmt, sys.stdout, color=sys.stdout.isatty())


def _scan_with_progress(captures: tuple[str, ...], cat: Any, max_flows: int | None) -> Any:
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

    from poolsniff.scan import scan_files

    total = sum(os.path.getsize(c) for c in captures)
    with Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(),
                  TimeRemainingColumn(), transient=True,
                  console=Console(stderr=True)) as bar:
        task = bar.add_task("scanning", total=total)
        done_before = [0, 0]   # bytes of finished files, last reading of the current one

        def tick(read: int) -> None:
            if read < done_before[1]:
                done_before[0] += done_before[1]
            done_before[1] = read
            bar.update(task, completed=min(total, done_before[0] + read))

        return scan_files(captures, cat, progress=tick, max_flows=max_flows)


@cli.group(context_settings=CONTEXT_SETTINGS)
def signatures() -> None:
    """Inspect the pool signature catalogue."""


@signatures.command("check", context_settings=CONTEXT_SETTINGS)
@click.option("--signatures", "sigdir", type=click.Path(file_okay=False),
              help="Directory of signature YAML files to validate.")
def signatures_check(sigdir: str | None) -> None:
    """Validate the signature files; exit 2 with file:line on the first error."""
    from poolsniff.signatures import Catalogue

    try:
        cat = Catalogue.load(sigdir)
    except ConfigError as exc:
        raise UsageFailure(str(exc)) from exc
    s = cat.summary()
    click.echo(f"ok: {s['pools']} signatures, {s['hosts']} host patterns "
               f"({', '.join(f'{k} {v}' for k, v in sorted(s['kinds'].items()))})")


@signatures.command("list", context_settings=CONTEXT_SETTINGS)
@click.option("--signatures", "sigdir", type=click.Path(file_okay=False))
def signatures_list(sigdir: str | None) -> None:
    """List every signature: id, kind, coins, stratum hosts and source."""
    from poolsniff.signatures import Catalogue

    try:
        cat = Catalogue.load(sigdir)
    except ConfigError as exc:
        raise UsageFailure(str(exc)) from exc
    for p in sorted(cat.pools.values(), key=lambda p: p.id):
        hosts = ",".join(h.pattern for h in p.hosts if h.role == "stratum")
        click.echo(f"{p.id}\t{p.kind}\t{'/'.join(p.coins)}\t{hosts}\t{p.source}")


def main() -> None:
    cli(prog_name="poolsniff")
