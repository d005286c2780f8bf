"""The `acflow` command line (I/O edge: arguments, files, terminal).

Subcommands: analyze, batch, live, keys, replay, diff, lab. A subcommand that is not built yet (parts of replay) says
so on stderr and exits with status 3 (EXIT_NOT_IMPLEMENTED): it never prints made-up output. A third-party module that
cannot be imported (a broken installation) is named on stderr, exit status 1 (EXIT_BROKEN_INSTALL).
"""
from __future__ import annotations

import importlib
import sys
from pathlib import Path

import click

from . import __version__

EXIT_OK = 0
EXIT_BROKEN_INSTALL = 1  # a dependency is missing or broken: reinstall
EXIT_USAGE = 2
EXIT_NOT_IMPLEMENTED = 3
EXIT_INPUT = 4  # unreadable / not a capture
EXIT_LAB = 5  # a lab scenario failed, or there is no lab here (installed without the source tree)


def _not_built(name: str, issue: str) -> None:
    click.echo(f"acflow {name}: not implemented yet ({issue}); nothing was done.", err=True)
    sys.exit(EXIT_NOT_IMPLEMENTED)


#: optional dependencies, by the pip extra that installs them (pyproject.toml [project.optional-dependencies])
EXTRAS = {"replay": ("scapy", "pyroute2")}


def _require_extra(extra: str, command: str) -> None:
    """Exit 1 naming the extra to install when one of its modules is not importable (checked before any work)."""
    missing = []
    for m in EXTRAS[extra]:
        try:
            importlib.import_module(m)
        except ImportError:
            missing.append(m)
    if missing:
        click.echo(f"acflow {command}: needs {', '.join(missing)}, which the base install leaves out: install "
                   f"acflow with the {extra!r} extra (pip install 'acflow[{extra}]', or `make venv` in a checkout).",
                   err=True)
        sys.exit(EXIT_BROKEN_INSTALL)


def _load(module: str, attr: str):
    """``attr`` of ``module`` (imported when the subcommand runs: heavy imports only when used). A dependency that
    does not import (lxml, cryptography… missing or broken) is a broken installation: say which and exit 1.
    An ImportError inside acflow's own packages is a bug and propagates."""
    try:
        return getattr(importlib.import_module(module), attr)
    except ImportError as e:
        top = (e.name or "").split(".")[0]
        if top in ("analyzer", "dissectors", "replay", "lab"):
            raise
        for extra, mods in EXTRAS.items():
            if top in mods:
                _require_extra(extra, module.split(".")[0])
        what = f"missing dependency {top}" if top else f"a dependency does not import ({e})"
        click.echo(f"acflow: {what}: reinstall acflow (pip install --force-reinstall acflow, or `make venv` in a "
                   f"checkout). Python said: {e}", err=True)
        sys.exit(EXIT_BROKEN_INSTALL)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="acflow")
def main() -> None:
    """acflow — phase-by-phase analysis of AnyConnect-protocol SSL VPN sessions.

    Feed it a capture (pcap/pcapng) and the session keys; it reconstructs the six phases (TLS handshake,
    group selection, user authentication, downloader, CSTP CONNECT, DTLS) and says what went wrong.
    """


def _gateway_specs(ctx, param, values):
    from .evidence import GatewaySpec  # noqa: PLC0415

    try:
        return [GatewaySpec.parse(v) for v in values]
    except ValueError as e:
        raise click.BadParameter(f"{e} (expected ADDR, ADDR:PORT, [IPv6]:PORT, NAME or NAME:PORT)") from e


def _tz(ctx, param, value):
    from .timefmt import parse_tz  # noqa: PLC0415

    try:
        return parse_tz(value)
    except ValueError as e:
        raise click.BadParameter(str(e)) from e


def _time(ctx, param, value):
    """--since/--until: the form is checked before any work (the date of a time of day comes from the capture)."""
    if value is None:
        return None
    from .timefmt import parse_time  # noqa: PLC0415

    try:
        parse_time(value, None, day_of=0.0)
    except ValueError as e:
        raise click.BadParameter(str(e)) from e
    return value


def _jobs(value):
    """--jobs: a positive number, or auto (None)."""
    if value is None or str(value).lower() == "auto":
        return None
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1 or n > 256:
        raise click.BadParameter(f"{value!r}: expected a number of processes (1 to 256) or auto")
    return n


@main.command()
@click.argument("captures", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--keylog", "keylogs", multiple=True, type=click.Path(dir_okay=False, path_type=Path),
              help="NSS key log file (SSLKEYLOGFILE); may be repeated.")
@click.option("--rsa-key", "rsa_keys", multiple=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Gateway RSA private key (PEM/DER) for TLS_RSA_* key exchange; may be repeated.")
@click.option("--format", "fmt", type=click.Choice(["terminal", "json", "html"]), default="terminal",
              help="Report format: terminal (default), json (documented in docs/json-schema.md) or a "
                   "self-contained html page.")
@click.option("-o", "--output", type=click.Path(path_type=Path), help="Write the report here ('-': standard output).")
@click.option("--verbose", is_flag=True,
              help="Show headers and XML (passwords, tokens, cookies, master secrets still redacted; usernames shown).")
@click.option("--show-secrets", is_flag=True, help="Do not redact passwords, cookies, tokens, master secrets.")
@click.option("--export-inner", type=click.Path(path_type=Path),
              help="Write the decapsulated inner IP packets to this pcapng.")
@click.option("--gateway", "gateways", multiple=True, metavar="ADDR[:PORT]", callback=_gateway_specs,
              help="The VPN gateway (repeatable): report sessions to it and nothing else, whatever the evidence. "
                   "IPv6 as [ADDR]:PORT. A host name (vpn.example.com[:PORT]) stands for the addresses the capture "
                   "ties to it: its DNS answers, TLS connections naming it (SNI).")
@click.option("--summary", is_flag=True,
              help="One line per session: client, gateway, start, duration, verdict, worst severity (terminal "
                   "format).")
@click.option("--fail-on", type=click.Choice(["info", "warning", "error"]), default=None, metavar="LEVEL",
              help="Exit with status 1 when a finding of LEVEL (info, warning or error) or above is reported: for "
                   "CI and scripts.")
@click.option("--session", "session_ids", multiple=True, metavar="ID",
              help="Report only this session (s1, s2…; repeatable or comma-separated).")
@click.option("--client", "clients", multiple=True, metavar="ADDR",
              help="Report only sessions from this client address (repeatable).")
@click.option("--user", "users", multiple=True, metavar="NAME",
              help="Report only sessions whose login sent this username (repeatable; needs the login decrypted: "
                   "keys).")
@click.option("--since", default=None, metavar="TIME", callback=_time,
              help="Report only sessions still running at TIME or later: 'YYYY-MM-DD HH:MM[:SS]' (ISO 8601, "
                   "optional offset; else in --tz), HH:MM[:SS] on the capture's first day, or epoch seconds.")
@click.option("--until", default=None, metavar="TIME", callback=_time,
              help="Report only sessions that started at TIME or earlier (same forms as --since).")
@click.option("--tz", default="UTC", metavar="ZONE", callback=_tz,
              help="Time zone of absolute times: UTC (default), local, or a name such as Europe/Paris, to line "
                   "the report up with the gateway's syslog.")
@click.option("--jobs", "-j", default="auto", show_default=True, metavar="N|auto",
              callback=lambda ctx, param, v: _jobs(v),
              help="Processes to split the analysis over (by client address pair; the result is the same). auto: "
                   "the machine's cores for a capture over 50 MB whose traffic is spread over several clients, "
                   "else 1.")
@click.option("--other-side", "other_side", multiple=True, type=click.Path(path_type=Path), metavar="CAPTURE",
              help="A capture of the same traffic taken at another point of its path (the gateway's side of a "
                   "client's capture, the other side of a firewall): what was lost, forged or translated between the "
                   "two points is reported with the sessions (PATH_* findings, and 'path' in JSON). Repeat it, or "
                   "give a directory, for the files of one capture (a ring buffer's: read in the order they were "
                   "written, frames numbered on through them). One CAPTURE to analyse then.")
def analyze(captures, keylogs, rsa_keys, fmt, output, verbose, show_secrets, export_inner, gateways, summary,
            fail_on, session_ids, clients, users, since, until, tz, jobs, other_side):
    """Reconstruct every VPN session in CAPTURES ('-': standard input), phase by phase; each session starts with a
    one-line verdict. Several files are one capture (a ring buffer's), read in the time order of their first
    packets; a directory stands for every capture file below it. A pcapng whose two interfaces hold the same traffic
    (a firewall's inside and outside) is read from the one nearer the client and the other compared with it, as
    --other-side compares two files.

    Only flows with evidence of the AnyConnect protocol become sessions (decrypted aggregate-auth/CONNECT/CSTP,
    or without keys: DTLS beside the TLS connection, resuming DTLS hellos, CSTP record patterns…); everything
    else is summed up as "other traffic".

    Exit status: 0 analysed (whatever was found; with --fail-on: nothing at or above LEVEL), 1 --fail-on found a
    finding at or above LEVEL, 2 usage, 4 an input cannot be read."""
    if summary and fmt != "terminal":
        raise click.UsageError("--summary is the terminal's one-line view; the JSON and HTML reports carry each "
                               "session's verdict")
    run_analyze = _load("analyzer.analyze", "run_analyze")
    sys.exit(run_analyze(captures=captures, keylogs=keylogs, rsa_keys=rsa_keys, fmt=fmt, output=output,
                         verbose=verbose, show_secrets=show_secrets, export_inner=export_inner,
                         gateways=gateways, summary=summary, fail_on=fail_on, session_ids=session_ids,
                         clients=clients, users=users, since=since, until=until, tz=tz, jobs=jobs,
                         other_side=other_side,
                         exit_when_done=_PROGRAM))


@main.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--keylog-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="A directory of key logs, given to every capture (matched by client random).")
@click.option("--rsa-key", "rsa_keys", multiple=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Gateway RSA private key for every capture; may be repeated.")
@click.option("--engine", default="local", show_default=True, metavar="local|dask://HOST:PORT",
              help="local: a Dask LocalCluster on this machine; dask://HOST:PORT: that cluster's scheduler.")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Worker processes of the local engine (default: one per core).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=Path("results.duckdb"),
              show_default=True, help="The DuckDB results file (created or added to).")
@click.option("--parquet", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Also write every table as DIR/<table>.parquet.")
@click.option("--force", is_flag=True, help="Analyse again captures already in the results file.")
@click.option("-q", "--quiet", is_flag=True, help="No progress output.")
@click.option("--task-timeout", type=click.FloatRange(min=0), default=1800, show_default=True, metavar="SECONDS",
              help="Stop a capture's analysis after this long (status timeout, tried again by a re-run); 0: no "
                   "limit.")
def batch(inputs, keylog_dir, rsa_keys, engine, workers, output, parquet, force, quiet, task_timeout):
    """Analyse many captures (files, or directories searched for *.pcap/*.pcapng…) as independent tasks on Dask
    distributed; results into a DuckDB file (tables captures, sessions, phases, findings) with each capture's
    full JSON report beside it. A re-run skips the captures already stored (by content hash).

    Key material per capture: key logs beside it (<name>.keys, <stem>.keys, <stem>.log, keys.log…), keys
    embedded in the pcapng, and every key log under --keylog-dir."""
    for dep in ("duckdb", "distributed"):  # the `batch` extra
        try:
            importlib.import_module(dep)
        except ImportError as e:
            click.echo(f"acflow batch: missing dependency {dep} (the batch extra): pip install 'acflow[batch]' "
                       f"(or `make venv` in a checkout). Python said: {e}", err=True)
            sys.exit(EXIT_BROKEN_INSTALL)
    run_batch = _load("analyzer.batch", "run_batch")
    try:
        rc = run_batch(inputs=inputs, keylog_dir=keylog_dir, rsa_keys=rsa_keys, engine=engine, output=output,
                       parquet=parquet, workers=workers, force=force, quiet=quiet, task_timeout=task_timeout or None)
    except KeyboardInterrupt:  # results are committed capture by capture: what was analysed stays in the store
        click.echo(f"acflow batch: interrupted; the captures analysed so far are in {output}", err=True)
        rc = 130
    sys.exit(rc)


@main.command()
@click.option("-i", "--interface", help="Interface to capture on (with dumpcap).")
@click.option("--stdin", "from_stdin", is_flag=True, help="Read a pcap/pcapng stream from standard input instead.")
@click.option("-f", "--filter", "capture_filter", default=None, help="Capture filter (BPF), e.g. 'host 198.51.100.1'.")
@click.option("--keylog", "keylogs", multiple=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Key log file; re-read as it grows (SSLKEYLOGFILE of a client connecting now).")
@click.option("--rsa-key", "rsa_keys", multiple=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Gateway RSA private key (PEM/DER) for TLS_RSA_* key exchange; may be repeated.")
@click.option("--duration", type=float, default=None, help="Stop after this many seconds (default: Ctrl-C).")
@click.option("--format", "fmt", type=click.Choice(["terminal", "json", "html", "jsonl"]), default="terminal",
              help="Report format; jsonl: one JSON object per phase/finding/keys event as it happens, the report "
                   "last.")
@click.option("-o", "--output", type=click.Path(path_type=Path), help="Write the report here ('-': standard output).")
@click.option("-w", "--write", type=click.Path(path_type=Path),
              help="Also save the capture (pcapng, with the keys embedded: it re-analyses alone).")
@click.option("--show-secrets", is_flag=True, help="Do not redact passwords, cookies, tokens, master secrets.")
def live(interface, from_stdin, capture_filter, keylogs, rsa_keys, duration, fmt, output, write, show_secrets):
    """Analyze live traffic as it arrives; report when the capture stops (Ctrl-C, --duration, end of input)."""
    run_live = _load("analyzer.live", "run_live")
    if not interface and not from_stdin:
        raise click.UsageError("give -i INTERFACE or --stdin")
    sys.exit(run_live(interface=interface, stdin=from_stdin, keylogs=keylogs, rsa_keys=rsa_keys, duration=duration,
                      fmt=fmt, output=output, write=write, show_secrets=show_secrets,
                      capture_filter=capture_filter))


@main.command()
@click.argument("capture", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--keylog", "keylogs", multiple=True, type=click.Path(dir_okay=False, path_type=Path),
              help="NSS key log file (SSLKEYLOGFILE); may be repeated.")
@click.option("--rsa-key", "rsa_keys", multiple=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Gateway RSA private key (PEM/DER) for TLS_RSA_* key exchange; may be repeated.")
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True,
              help="Write the key log here ('-': standard output); with --embed, the capture.")
@click.option("--embed", is_flag=True, help="Write CAPTURE itself to OUTPUT as pcapng with every secret embedded "
              "(a Decryption Secrets Block, as editcap --inject-secrets writes).")
def keys(capture, keylogs, rsa_keys, output, embed):
    """Write a Wireshark-usable key log for everything acflow can decrypt (TLS, and every DTLS handshake's
    master secret by its ClientHello random), or with --embed the capture with those keys inside."""
    run_keys = _load("analyzer.keys_export", "run_keys")
    sys.exit(run_keys(capture=capture, keylogs=keylogs, rsa_keys=rsa_keys, output=output, embed=embed))


class _ReplayGroup(click.Group):
    """`acflow replay client …` and `acflow replay gateway …` are built; anything else under `replay` says it is not
    built yet (exit 3)."""

    def resolve_command(self, ctx, args):
        if args and not args[0].startswith("-") and args[0] not in self.commands:
            return "other", _replay_not_built, args[1:]
        return super().resolve_command(ctx, args)


@click.command("other", context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
def _replay_not_built():
    _not_built("replay", "only `acflow replay client CAPTURE …` (issue #14) and `acflow replay gateway CAPTURE …` "
               "(issue #15) are built")


@main.group(cls=_ReplayGroup)
def replay():
    """Play a recorded VPN session again, for regression tests and to reproduce a customer's session.

    `acflow replay client CAPTURE --keylog K --gateway URL` plays the recorded client's part against a live gateway:
    it logs in again, opens the tunnel (CSTP and DTLS), sends the recorded inner packets through a TUN device in a
    network namespace and reports, side by side, what changed (needs root). `acflow replay gateway CAPTURE --keylog
    K` plays the recorded gateway's part for a real client: the recorded answers, CONNECT headers, DTLS behaviour and
    downstream packets. Compare two runs with `acflow diff`."""


@replay.command("client")
@click.argument("capture", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--keylog", "keylogs", multiple=True, type=click.Path(dir_okay=False, path_type=Path),
              help="NSS key log of the recorded session; may be repeated.")
@click.option("--session", "session_id", default=None, help="The recorded session to replay (s1, s2…; default: "
              "the first one that reached a CSTP CONNECT).")
@click.option("--gateway", required=True, metavar="URL", help="The gateway to replay against (https://HOST[:PORT]/).")
@click.option("--resolve", default=None, metavar="HOST:ADDR", help="Connect to ADDR for the gateway URL's HOST "
              "(SNI and Host stay HOST).")
@click.option("--user", default=None, help="Username to answer (default: the recorded one).")
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of standard input.")
@click.option("--reuse-credentials", is_flag=True, help="Answer every form field with the recorded value "
              "(taken from the decrypted capture; never printed).")
@click.option("--netns", default=None, metavar="NAME", help="Network namespace for the TUN device (default: a "
              "private acflow-rp-<pid>, removed at the end; an existing one is kept).")
@click.option("--speed", type=float, default=None, help="Play the inner packets X times faster than recorded.")
@click.option("--no-timing", is_flag=True, help="Send the inner packets one after the other at once.")
@click.option("--no-dtls", is_flag=True, help="Offer no DTLS: carry everything over CSTP.")
@click.option("--write", "write", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Keep a capture of the replay (pcapng, its keys embedded) that `acflow analyze` reads alone.")
@click.option("--cafile", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Verify the gateway's certificate against this CA file.")
@click.option("--servercert", default=None, metavar="SHA", help="Accept only the gateway certificate with this "
              "SHA-256 or SHA-1 fingerprint (sha256:HEX, sha1:HEX or HEX), as openconnect's --servercert.")
@click.option("--format", "fmt", type=click.Choice(["terminal", "json"]), default="terminal",
              help="Report format: terminal (default) or json.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write the report here.")
def replay_client(capture, keylogs, session_id, gateway, resolve, user, password_stdin, reuse_credentials, netns,
                  speed, no_timing, no_dtls, write, cafile, servercert, fmt, output):
    """Play the client's part of a recorded session again against GATEWAY, its inner packets through a TUN
    device in a network namespace; report it side by side with the recording. Needs root (CAP_NET_ADMIN).

    Exit status: 0 same as recorded, 1 differs, 2 usage, 4 unusable capture/keys, 5 environment (no root, no
    namespace/TUN), 130 interrupted."""
    _require_extra("replay", "replay client")
    if password_stdin and reuse_credentials:
        raise click.UsageError("--password-stdin and --reuse-credentials exclude each other")
    if speed is not None and no_timing:
        raise click.UsageError("--speed and --no-timing exclude each other")
    if speed is not None and speed <= 0:
        raise click.UsageError("--speed must be above 0")
    if cafile and servercert:
        raise click.UsageError("--cafile and --servercert exclude each other")
    if servercert:
        parse = _load("replay.gatewayconn", "parse_servercert")
        try:
            parse(servercert)
        except ValueError as e:
            raise click.UsageError(str(e)) from e
    password = None
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    Options = _load("replay.client", "Options")
    run = _load("replay.client", "run_replay_client")
    opts = Options(capture=capture, keylogs=tuple(keylogs), gateway=gateway, session=session_id, user=user,
                   password=password, reuse_credentials=reuse_credentials, netns=netns, speed=speed or 1.0,
                   no_timing=no_timing, cafile=cafile, servercert=servercert, resolve=resolve, no_dtls=no_dtls,
                   write=write)
    sys.exit(run(opts, fmt=fmt, output=output))


@replay.command("gateway")
@click.argument("capture", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--keylog", "keylogs", multiple=True, type=click.Path(dir_okay=False, path_type=Path),
              help="NSS key log of the recorded session; may be repeated.")
@click.option("--session", "session_id", default=None, help="The recorded session (s1, s2…; default: the first "
              "one that reached a CSTP CONNECT).")
@click.option("--script", "script_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Serve this script (written by --script-out, maybe edited) instead of building one.")
@click.option("--script-out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the script built from the recording here.")
@click.option("--no-serve", is_flag=True, help="Only build (and with --script-out write) the script.")
@click.option("--listen", default="0.0.0.0:443", show_default=True, metavar="ADDR[:PORT]",
              help="Address and TCP port to serve on (DTLS: the same address, the recorded X-DTLS-Port).")
@click.option("--cert", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Server certificate (PEM); default: a self-signed one, its pin printed.")
@click.option("--key", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Its private key.")
@click.option("--speed", type=float, default=1.0, show_default=True,
              help="Play the recorded downstream packets X times faster.")
@click.option("--address", default=None, metavar="IPV4", help="Hand out this tunnel address instead of the "
              "recorded one (the re-driven packets are rewritten to it).")
@click.option("--keylog-out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the gateway's TLS keys here (NSS key log).")
@click.option("--events", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the gateway's events (one JSON object per line) here.")
@click.option("--duration", type=float, default=None, help="Stop after this many seconds (default: Ctrl-C).")
@click.option("--write", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Keep a capture of the replay, keys embedded (pcapng DSB); needs --interface.")
@click.option("--interface", default=None, help="Interface the replay is captured on (with --write).")
def replay_gateway(capture, keylogs, session_id, script_path, script_out, no_serve, listen, cert, key, speed,
                   address, keylog_out, events, duration, write, interface):
    """Serve a recorded gateway to a real client: the recorded answers to each POST, the recorded CONNECT
    headers (fresh cookie and secrets), DTLS as recorded (PSK-NEGOTIATE answered, or dropped), the recorded
    gateway→client packets at their recorded times, the recorded end.

    Exit status: 0 served, 2 usage, 4 unusable capture/keys/script, 5 environment (bind, dumpcap)."""
    if not capture and not script_path:
        raise click.UsageError("give CAPTURE (with --keylog) or --script FILE")
    if capture and script_path:
        raise click.UsageError("CAPTURE and --script exclude each other")
    if bool(cert) != bool(key):
        raise click.UsageError("--cert and --key go together")
    if speed <= 0:
        raise click.UsageError("--speed must be above 0")
    if write and not interface:
        raise click.UsageError("--write needs --interface")
    if address:  # the recorded packets are rewritten to the new address with scapy
        _require_extra("replay", "replay gateway --address")
    run = _load("replay.replay_gateway", "run_replay_gateway")
    sys.exit(run(capture=capture, keylogs=keylogs, session_id=session_id, listen=listen, cert=cert, key=key,
                 speed=speed, script_out=script_out, script_path=script_path, keylog_out=keylog_out, events=events,
                 duration=duration, write=write, interface=interface, address=address, no_serve=no_serve))


@main.command()
@click.argument("baseline", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("new", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--keylog", "keylogs", multiple=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Key log for BASELINE (and for NEW unless --keylog-new is given); may be repeated.")
@click.option("--keylog-new", "keylogs_new", multiple=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Key log for NEW; may be repeated.")
@click.option("--rsa-key", "rsa_keys", multiple=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Gateway RSA private key for TLS_RSA_* key exchange (both sides); may be repeated.")
@click.option("--ignore", "ignore", multiple=True, metavar="FIELD",
              help="A field expected to change (repeatable): a name as the diff prints it "
                   "(cstp.response.X-CSTP-MTU), a prefix (cstp.response) or a glob ('traffic.*.c2s').")
@click.option("--format", "fmt", type=click.Choice(["terminal", "json", "html"]), default="terminal",
              help="Diff format: terminal (default), json or html.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write the diff here.")
def diff(baseline, new, keylogs, keylogs_new, rsa_keys, ignore, fmt, output):
    """Regression diff of the sessions in BASELINE and NEW (captures with keys — key log or embedded — or JSON
    reports of `acflow analyze --format json`): phases, requests/responses and headers, tunnel parameters, DTLS,
    findings, timings beyond tolerance (docs/diff.md), inner traffic.

    Exit status: 0 same, 1 differs, 4 an input cannot be used."""
    run_diff = _load("analyzer.diff_run", "run_diff")
    try:
        rc = run_diff(baseline=baseline, new=new, keylogs=keylogs, keylogs_new=keylogs_new, rsa_keys=rsa_keys,
                      ignore=list(ignore), fmt=fmt, output=output)
    except KeyboardInterrupt:
        rc = _load("analyzer.outputs", "say_interrupted")("diff")
    sys.exit(rc)


def _lab_entry():
    """(the lab's own default output root — `python -m lab`'s, not `acflow lab`'s —, run) of the lab in the source
    checkout this analyzer runs from.

    The lab (`lab/`, beside `analyzer/` in the repository) is not installed with acflow, and the analyzer never
    imports it except here. An editable install (`pip install -e .`, `make venv`) maps only the installed packages
    (analyzer, dissectors, replay), so the checkout's root is put first on sys.path for this command. Installed
    without the source tree (a wheel, an sdist) there is no `lab/` next to `analyzer/`: say so, exit EXIT_LAB."""
    root = Path(__file__).resolve().parent.parent
    if not (root / "lab" / "__main__.py").is_file():
        click.echo("acflow lab: the lab is part of the acflow source tree, not of the installed package: run "
                   "`python -m lab` (or `acflow lab`) from a checkout of acflow.", err=True)
        sys.exit(EXIT_LAB)
    if sys.path[:1] != [str(root)]:
        sys.path.insert(0, str(root))
    from lab.__main__ import DEFAULT_OUT, run  # noqa: PLC0415 - the lab only when asked for, from the checkout

    return DEFAULT_OUT, run


@main.command()
@click.argument("scenarios", nargs=-1)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output root: each scenario goes to OUT/NAME/ (default: the current directory; `python -m lab` "
                   "in a checkout writes the checkout's samples/). Never inside acflow's installation.")
@click.option("--list", "list_only", is_flag=True, help="List the scenarios.")
@click.option("--keep-work", is_flag=True, help="Keep the temporary work directory.")
def lab(scenarios, out, list_only, keep_work):
    """Run real openconnect ↔ ocserv scenarios in network namespaces and capture them (needs root; the lab is in
    the source tree, not installed: run from a checkout).

    SCENARIOS: names from --list, or 'all'.
    """
    _default, run = _lab_entry()
    from .outputs import OutputError, check_lab_output  # noqa: PLC0415
    if not scenarios and not list_only:
        raise click.UsageError("name at least one scenario (or 'all'); see --list")
    out = out if out is not None else Path.cwd()
    if not list_only:
        try:
            check_lab_output(out)
        except OutputError as e:
            click.echo(f"acflow lab: {e}", err=True)
            sys.exit(EXIT_INPUT)
    rc = run(list(scenarios), out, list_only=list_only, keep_work=keep_work)
    sys.exit(EXIT_LAB if rc == 1 else rc)


#: set by `run` (the `acflow` program itself): a command may end the process as soon as its output is written
#: (`acflow analyze`: analyzer/analyze.py `exit_now`), never when `main` is called in a process that goes on
#: (click's test runner, a caller's own script)
_PROGRAM = False


def run() -> None:
    """The `acflow` program (the console script, ``python -m analyzer.cli``)."""
    global _PROGRAM  # noqa: PLW0603 - one program per process
    _PROGRAM = True
    main()


if __name__ == "__main__":
    run()
