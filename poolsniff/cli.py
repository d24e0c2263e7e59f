"""The ``poolsniff`` command line. Adapts arguments and output; the work is in the library."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

import click

from poolsniff import __version__
from poolsniff.errors import EXIT_USAGE, CaptureError, ConfigError

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
FORMATS = ("table", "json", "jsonl", "csv", "md", "html")


class UsageFailure(click.UsageError):
    """A one-line error with exit status 2 (bad config, bad capture, bad option)."""

    exit_code = EXIT_USAGE

    def show(self, file: Any = None) -> None:
        click.echo(f"Error: {self.format_message()}", err=True)


@click.group(context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, "-V", "--version", prog_name="poolsniff")
def cli() -> None:
    """Find cryptocurrency mining in network traffic.

    poolsniff reads packet captures (scan) or a live interface (watch),
    recognises every mining protocol dialect it knows (Stratum V1,
    EthereumStratum, eth-proxy, KawPow/Equihash/Kaspa, XMRig, Grin, Beam,
    HTTP getwork, browser WebSocket miners) and pool host names in DNS, TLS
    SNI and HTTP, and lists every host that mines with the packets that prove it;
    report turns that evidence into a sweep report per institution.

    \b
    Examples:
      poolsniff scan capture.pcap
      poolsniff scan --format json -o result.json day1.pcapng day2.pcap.gz
      tcpdump -i eth1 -w - | poolsniff scan --format jsonl -
      poolsniff watch -i eth1 --db evidence.db --alerts alerts.json --user poolsniff
      poolsniff report --db evidence.db --institutions campus.yaml --lang zh -f html -o r.html
      poolsniff signatures list
    """


#: scan's and watch's --dedup (poolsniff/dedup.py)
DEDUP = click.option(
    "--dedup/--no-dedup", default=True, show_default=True,
    help="Count a packet captured twice once: a SPAN mirroring both directions (or a router's "
         "both sides) hands the sensor copies, which would double every host's packets and "
         "bytes. A copy is the same TCP segment (addresses, ports, IP identification, "
         "sequence, acknowledgement, checksum) within 4096 frames and 50 ms; stats.duplicates "
         "counts them.")

MEMCAP = click.option(
    "--stream-memcap-mb", "memcap_mb", type=click.IntRange(1, 1_000_000), default=256,
    show_default=True,
    help="Memory for what flows hold back, over all of them: segments waiting for a hole to "
         "fill, partial lines and messages, unfinished TLS ClientHellos. Each flow's share is "
         "bounded, but a flow table of hostile flows each holding its bound would not be; past "
         "this cap what would be held is dropped and counted (stats anomaly "
         "stream.memcap_drop). With scan --jobs, each worker has this much.")


def _expand(captures: tuple[str, ...]) -> tuple[str, ...]:
    """Capture arguments as files: a directory is the captures in it, in time order."""
    from poolsniff.sources.pcapfile import captures_in
    out: list[str] = []
    for c in captures:
        if c == "-" or os.path.isfile(c):
            out.append(c)
        elif os.path.isdir(c):
            found, other = captures_in(c)
            if not found:
                raise UsageFailure(f"{c}: a directory with no pcap or pcapng file in it "
                                   f"({len(other)} other files)")
            if other:
                click.echo(f"Warning: {c}: {len(other)} files that are not captures passed "
                           f"over (first: {other[0]})", err=True)
            out += found
        else:
            raise UsageFailure(f"{c}: no such capture file or directory")
    return tuple(out)


@cli.command(context_settings=CONTEXT_SETTINGS)
@click.argument("captures", nargs=-1, required=True, metavar="CAPTURE...")
@click.option("-f", "--format", "fmt", type=click.Choice(FORMATS), default="table",
              show_default=True,
              help="table: readable summary; json: one object {hosts, stats}; "
                   "jsonl: eve.json-style events for a SIEM; csv: one row per host; md, html: "
                   "the report command's document (sweep summary, every IP and its evidence).")
@click.option("--lang", type=click.Choice(["en", "zh"]), default="en", show_default=True,
              help="Language of the md and html documents' labels.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True),
              help="Write the result to this file instead of standard output.")
@click.option("--signatures", "sigdir", type=click.Path(file_okay=False),
              help="Directory of pool signature YAML files (default: the bundled catalogue).")
@click.option("-j", "--jobs", type=click.IntRange(0, 256), default=None,
              help="Use N cores (0: all of them): each reads all the captures and takes 1/N "
                   "of the flows (by 5-tuple hash); the merged answer is exactly that of one "
                   "core, for one large file as for many.")
@click.option("--max-flows", type=click.IntRange(1000, 50_000_000), default=None,
              help="Flows tracked at once (default 200000, under 1 KB each); past it the "
                   "oldest idle flows are finished first and counted as evicted.")
@click.option("--progress/--no-progress", default=None,
              help="Progress bar on stderr (default: only when stderr is a terminal).")
@DEDUP
@MEMCAP
@click.option("--debug", is_flag=True, help="Show tracebacks for unexpected errors.")
def scan(captures: tuple[str, ...], fmt: str, lang: str, output: str | None, sigdir: str | None,
         jobs: int | None, max_flows: int | None, progress: bool | None, dedup: bool,
         memcap_mb: int, debug: bool) -> None:
    """Scan pcap/pcapng captures and list every host that mines.

    CAPTURE is a pcap or pcapng file (µs or ns timestamps, any link type
    poolsniff decodes), optionally gzip-compressed; '-' reads standard input;
    a directory stands for the captures in it (any depth, told by their
    contents), in the order of their first packet's time (rotated files).
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
      poolsniff scan --jobs 0 /data/mirror/          # a directory of rotated captures
    """
    from poolsniff.output import render
    from poolsniff.scan import scan_files
    from poolsniff.signatures import Catalogue

    try:
        cat = Catalogue.load(sigdir)
    except ConfigError as exc:
        raise UsageFailure(str(exc)) from exc
    captures = _expand(captures)
    show = progress if progress is not None else sys.stderr.isatty()
    if jobs is not None and "-" in captures:
        raise UsageFailure("--jobs reads files; it cannot be used with '-' (stdin)")
    try:
        if jobs is not None:
            from poolsniff.scan import scan_parallel

            def run(tick: Callable[[int], None] | None) -> Any:
                return scan_parallel(list(captures), sigdir, jobs or _cores(), max_flows, tick,
                                     dedup, memcap_mb << 20)
        else:
            def run(tick: Callable[[int], None] | None) -> Any:
                return scan_files(captures, cat, progress=tick, max_flows=max_flows, dedup=dedup,
                                  memcap=memcap_mb << 20)
        result = _with_progress(captures, run) if show and "-" not in captures else run(None)
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
            render(result, fmt, fh, lang=lang)
    else:
        render(result, fmt, sys.stdout, color=sys.stdout.isatty(), lang=lang)


def _with_progress(captures: tuple[str, ...], run: Callable[[Callable[[int], None] | None], Any]) -> Any:
    """run(tick) under a progress bar on stderr; tick gets the bytes read of all the captures."""
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

    total = sum(os.path.getsize(c) for c in captures)
    with Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(),
                  TimeRemainingColumn(), transient=True,
                  console=Console(stderr=True)) as bar:
        task = bar.add_task("scanning", total=total)

        def tick(read: int) -> None:
            bar.update(task, completed=min(total, read))

        return run(tick)


class Duration(click.ParamType):
    """A duration: 30, 30s, 10m, 1h, 2d (seconds when no unit)."""

    name = "DURATION"
    UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}

    def convert(self, value: Any, param: Any, ctx: Any) -> float:
        if isinstance(value, (int, float)):
            return float(value)
        text = str(value).strip().lower()
        mult = self.UNITS.get(text[-1:], None)
        num = text[:-1] if mult else text
        try:
            secs = float(num) * (mult or 1)
        except ValueError:
            self.fail(f"{value!r} is not a duration (examples: 10s, 5m, 1h)", param, ctx)
        if secs < 0:
            self.fail(f"{value!r}: a duration cannot be negative", param, ctx)
        return secs


@cli.command(context_settings=CONTEXT_SETTINGS)
@click.option("-i", "--interface", "iface", metavar="IFACE",
              help="Capture on this interface (promiscuous), e.g. the mirror port eth1.")
@click.option("--read", "read", metavar="FILE|-",
              help="Read a pcap/pcapng stream instead of an interface; '-' is standard input "
                   "(tcpdump -i eth1 -w - | poolsniff watch --read -).")
@click.option("--bpf", metavar="EXPR", help="Capture filter in tcpdump syntax, e.g. 'not port 22'.")
@click.option("--db", default="poolsniff.db", show_default=True, type=click.Path(dir_okay=False),
              help="SQLite evidence store (created 0600; a restart continues its totals).")
@click.option("--alerts", metavar="FILE|-|syslog",
              help="Where alert lines go (eve.json-style JSON lines): a file (appended, "
                   "reopened on SIGHUP), '-' for standard output, or 'syslog'.")
@click.option("--snaplen", type=click.IntRange(64, 262144), default=65535, show_default=True,
              help="Bytes captured per packet.")
@click.option("--buffer-mb", type=click.IntRange(1, 16384), default=64, show_default=True,
              help="Kernel capture buffer; raise it if the stats show drops in bursts.")
@click.option("--flush-every", type=Duration(), default="10s", show_default=True,
              help="How often evidence is written to the store (what a kill -9 can lose).")
@click.option("--suppress", type=Duration(), default="1h", show_default=True,
              help="Repeat an alert for the same (host, pool, wallet, coin) at most this often.")
@click.option("--stats-every", type=Duration(), default="60s", show_default=True,
              help="How often a 'stats' event (libpcap received/dropped, flows) is written.")
@click.option("--user", metavar="NAME",
              help="Drop root to this user once the interface is open (the --db and --alerts "
                   "paths must be writable by it).")
@click.option("--signatures", "sigdir", type=click.Path(file_okay=False),
              help="Directory of pool signature YAML files (reloaded on SIGHUP).")
@click.option("--max-flows", type=click.IntRange(1000, 50_000_000), default=None,
              help="Flows tracked at once (default 200000).")
@click.option("--status/--no-status", default=None,
              help="Status line on stderr: pps, drops, flows, mining hosts (default: on a TTY).")
@click.option("-w", "--workers", type=click.IntRange(0, 256), default=1, show_default=True,
              help="Capture processes (0: one per core). Each captures every packet and takes "
                   "a share of the flows (and learns pool addresses from every DNS answer); "
                   "this process keeps the store and raises the alerts. For links whose mining "
                   "traffic one core cannot keep up with; --max-flows and --stream-memcap-mb "
                   "are per worker.")
@DEDUP
@MEMCAP
def watch(iface: str | None, read: str | None, bpf: str | None, db: str, alerts: str | None,
          snaplen: int, buffer_mb: int, flush_every: float, suppress: float, stats_every: float,
          user: str | None, sigdir: str | None, max_flows: int | None,
          status: bool | None, workers: int, dedup: bool, memcap_mb: int) -> None:
    """Watch a live interface for months: keep the evidence, raise alerts.

    Captures through libpcap, runs the same pipeline as 'scan', and every
    --flush-every writes what it learned to the SQLite store in one transaction
    (a restart, or a kill -9, continues the same totals). A host that starts
    mining, or mines with a new pool, wallet or coin, raises one alert line.

    Signals: SIGTERM/SIGINT finish the open flows, flush and exit 0; SIGHUP
    reloads the signatures and reopens the alert file (log rotation).

    \b
    Examples:
      poolsniff watch -i eth1 --db /var/lib/poolsniff/evidence.db \\
          --alerts /var/log/poolsniff/alerts.json --user poolsniff
      poolsniff watch -i eth1 --workers 4 --db evidence.db --alerts syslog
      tcpdump -i eth1 -w - | poolsniff watch --read - --alerts -
      poolsniff report --db /var/lib/poolsniff/evidence.db
    """
    import logging

    from poolsniff.watch import Watcher, WatchOptions

    if (iface is None) == (read is None):
        raise UsageFailure("give exactly one of -i IFACE (live capture) or --read FILE|- "
                           "(a pcap stream)")
    if read is not None and os.path.isdir(read):
        raise UsageFailure(f"{read}: a directory; watch --read takes one capture or '-' "
                           f"(scan takes a directory: poolsniff scan {read})")
    if flush_every <= 0:
        raise UsageFailure("--flush-every must be more than 0s")
    workers = workers or (os.cpu_count() or 1)
    if workers > 1 and read == "-":
        raise UsageFailure("--workers reads the capture once per worker: give -i IFACE or "
                           "--read FILE, not standard input")
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s poolsniff[%(process)d] %(levelname)s %(message)s")
    opts = WatchOptions(iface=iface, read=read, bpf=bpf, db=db, alerts=alerts, snaplen=snaplen,
                        buffer_mb=buffer_mb, flush_every=flush_every, suppress=suppress,
                        stats_every=stats_every, user=user, sigdir=sigdir, max_flows=max_flows,
                        status=status if status is not None else sys.stderr.isatty(), dedup=dedup,
                        memcap=memcap_mb << 20, workers=workers)
    try:
        code = Watcher(opts).run()
    except (ConfigError, CaptureError) as exc:
        raise UsageFailure(str(exc)) from exc
    except OSError as exc:
        raise UsageFailure(f"{exc.filename or ''}: {exc.strerror or exc}".lstrip(": ")) from exc
    sys.exit(code)


class When(click.ParamType):
    """A point in time: 2021-10-08, 2021-10-08T06:00, 2021-10-08 06:00:00 (UTC) or epoch s."""

    name = "TIME"

    def convert(self, value: Any, param: Any, ctx: Any) -> float:
        from datetime import datetime, timezone
        if isinstance(value, (int, float)):
            return float(value)
        text = str(value).strip()
        try:
            return float(text)
        except ValueError:
            pass
        for fmt in ("%Y-%m-%d", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S",
                    "%Y-%m-%d %H:%M:%S"):
            try:
                return datetime.strptime(text, fmt).replace(tzinfo=timezone.utc).timestamp()
            except ValueError:
                continue
        self.fail(f"{value!r} is not a time (2021-10-08, 2021-10-08T06:00, or epoch seconds; UTC)",
                  param, ctx)


REPORT_FORMATS = ("table", "json", "md", "html", "csv", "jsonl")


@cli.command(context_settings=CONTEXT_SETTINGS)
@click.option("--db", "dbs", multiple=True, metavar="STORE",
              help="Evidence store written by 'poolsniff watch' (repeat to merge the stores "
                   "of several sensors or links; a link two sensors both see would count "
                   "twice).")
@click.option("--from", "froms", multiple=True, metavar="SCAN.json",
              help="A result saved by 'scan --format json' (repeat to merge).")
@click.option("--institutions", multiple=True, metavar="FILE",
              help="Institution registry, YAML or CSV (CIDR blocks → institution, category, "
                   "city); repeatable. Without it every IP is 'not in the registry'.")
@click.option("--since", type=When(), help="Only hosts active at or after this time (UTC).")
@click.option("--until", type=When(), help="Only hosts active at or before this time (UTC).")
@click.option("--lang", type=click.Choice(["en", "zh"]), default="en", show_default=True,
              help="Language of labels (zh: Chinese; category names as in the 2021 sweeps).")
@click.option("-f", "--format", "fmt", type=click.Choice(REPORT_FORMATS), default="table",
              show_default=True,
              help="table: terminal; md: Markdown to paste in a document; html: one self-"
                   "contained page with charts and an inspection sheet per institution; json: "
                   "summary, institutions and hosts; csv: one row per IP (UTF-8 with BOM, opens "
                   "in Excel); jsonl: eve.json-style events.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True),
              help="Write the report to this file instead of standard output.")
@click.option("--efficiency", metavar="FILE",
              help="Energy-per-hash table (default: signatures/energy/efficiency.yaml).")
@click.option("--geoip", metavar="MMDB",
              help="MaxMind-format city database (e.g. GeoLite2-City.mmdb) to place IPs the "
                   "registry does not hold in a city (needs: pip install 'poolsniff[geoip]').")
def report(dbs: tuple[str, ...], froms: tuple[str, ...], institutions: tuple[str, ...],
           since: float | None, until: float | None, lang: str, fmt: str, output: str | None,
           efficiency: str | None, geoip: str | None) -> None:
    """Report the mining found: a sweep summary, institutions, every IP.

    Reads watch stores (--db, also while the watch runs) and/or saved scan
    results (--from), all merged, maps each IP to its institution with the
    registry, and gives the numbers a provincial sweep publishes: mining and
    suspect IPs, IPs per category and city, hashrate per algorithm with its 95%
    interval (never summed across algorithms), energy per algorithm from a
    cited efficiency table, pool-bound traffic (mean and peak 5-minute), top
    pools and coins; then one row per institution (sorted by severity) and, in
    HTML, an inspection sheet per institution with each IP's evidence frames.

    \b
    Examples:
      poolsniff scan -f json -o day1.json day1.pcap
      poolsniff report --from day1.json --institutions campus.yaml
      poolsniff report --db evidence.db --institutions province.csv --lang zh -f html -o r.html
      poolsniff report --db evidence.db --since 2021-10-01 --until 2021-10-08 -f csv -o ips.csv
      poolsniff report --db link1.db --db link2.db --institutions province.csv
    """
    from poolsniff import report as rpt
    from poolsniff import report_render as rr
    from poolsniff.output import write_jsonl
    from poolsniff.registry import Registry
    from poolsniff.scan import traffic_json
    from poolsniff.sweep import GeoIP, build, load_efficiency

    try:
        result = rpt.load(dbs, froms)
        reg = Registry.load(*institutions) if institutions else None
        eff = load_efficiency(efficiency)
        geo = GeoIP(geoip, lang) if geoip else None
    except ConfigError as exc:
        raise UsageFailure(str(exc)) from exc
    if since is not None and until is not None and since > until:
        raise UsageFailure("--since is after --until")
    rep = build(result.hosts, result.traffic, reg, since, until, eff, geo)
    rep["stats"] = result.stats
    rep["traffic"] = traffic_json(result.traffic)
    rep["sources"] = {"db": list(dbs), "from": list(froms), "institutions": list(institutions)}
    fh = open(output, "w", encoding="utf-8", newline="") if output else sys.stdout
    try:
        if fmt == "json":
            rr.write_json(rep, fh, lang)
        elif fmt == "md":
            rr.write_md(rep, fh, lang)
        elif fmt == "html":
            rr.write_html(rep, fh, lang, rep["traffic"]["bins"])
        elif fmt == "csv":
            rr.write_csv(rep, fh, lang)
        elif fmt == "jsonl":
            write_jsonl(result, fh)
        else:
            rr.write_table(rep, fh, lang, color=fh is sys.stdout and sys.stdout.isatty())
    finally:
        if output:
            fh.close()


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


def _cores() -> int:
    """Cores this process may run on (its CPU affinity, as taskset or a container sets it)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def main() -> None:
    cli(prog_name="poolsniff")
