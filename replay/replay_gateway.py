"""`acflow replay gateway`: serve a recorded gateway (replay/from_recording.py) to a real client (I/O edge).

The script is built from the recording (or read with `--script`), optionally written out (`--script-out`), then
served by the scripted gateway (replay/gateway.py) until Ctrl-C / SIGTERM or `--duration`. With `--write FILE
--interface IFACE` the gateway keeps its own capture of the replay (dumpcap on IFACE) with its TLS keys embedded
as a pcapng Decryption Secrets Block (editcap --inject-secrets), so that `acflow analyze FILE` / `acflow diff
RECORDING FILE` need no key log (PSK-NEGOTIATE DTLS keys derive from the TLS keys).

Exit status: 0 served (or only written with --no-serve), 2 usage, 4 the capture, keys or script cannot be used,
5 the environment does not allow it (the address/port cannot be bound, dumpcap/editcap missing or failing).
"""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

EXIT_OK, EXIT_USAGE, EXIT_INPUT, EXIT_ENV = 0, 2, 4, 5


def _say(text: str) -> None:
    print(f"acflow replay gateway: {text}", file=sys.stderr, flush=True)


def self_signed(directory: Path, host: str) -> tuple[Path, Path]:
    """A self-signed certificate and key for ``host`` (cryptography), written into ``directory``."""
    from cryptography import x509  # noqa: PLC0415
    from cryptography.hazmat.primitives import hashes, serialization  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415
    from cryptography.x509.oid import NameOID  # noqa: PLC0415

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=7))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
            .sign(key, hashes.SHA256()))
    c, k = directory / "replay-cert.pem", directory / "replay-key.pem"
    c.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    k.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()))
    return c, k


def pin_sha256(cert: Path) -> str:
    """openconnect's --servercert pin of a PEM certificate: pin-sha256:BASE64(SHA-256 of its public key)."""
    from cryptography import x509  # noqa: PLC0415
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415

    c = x509.load_pem_x509_certificate(cert.read_bytes())
    spki = c.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return "pin-sha256:" + base64.b64encode(hashlib.sha256(spki).digest()).decode()


def parse_listen(value: str) -> tuple[str, int]:
    """ADDR, ADDR:PORT or [IPv6]:PORT → (address, port); default port 443."""
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else 443
    if value.count(":") == 1:
        host, port = value.split(":")
        return host or "0.0.0.0", int(port)
    return value, 443


def run_replay_gateway(*, capture, keylogs, session_id, listen, cert, key, speed, script_out, script_path,
                       keylog_out, events, duration, write, interface, address, no_serve) -> int:
    from analyzer.analyze import InputError  # noqa: PLC0415

    from .from_recording import RecordingUnusable, build_script, load_recorded  # noqa: PLC0415
    from .gateway import ScriptedGateway  # noqa: PLC0415
    from .script import Script, ScriptError  # noqa: PLC0415

    try:
        host, port = parse_listen(listen)
    except ValueError:
        _say(f"--listen {listen!r}: expected ADDR, ADDR:PORT or [IPv6]:PORT")
        return EXIT_USAGE
    sni = None
    try:
        if script_path:
            script = Script.load(script_path)
            _say(f"serving the script {script_path} ({len(script.steps)} step(s))")
        else:
            rec = load_recorded(capture, keylogs, session_id)
            built = build_script(rec, speed=speed, address=address)
            script = built.script
            sni = ((rec.session.get("phases") or [{}])[0].get("details") or {}).get("client_hello", {}).get("sni")
            _say(f"{capture} session {rec.session.get('id')}: {len(script.steps)} step(s), DTLS {built.dtls}, "
                 f"{built.packets} gateway→client packet(s) re-driven")
            for n in built.notes:
                _say(f"note: {n}")
    except (InputError, RecordingUnusable, ScriptError, OSError) as e:
        _say(str(e))
        return EXIT_INPUT
    if script_out:
        script.dump(script_out)
        _say(f"script written to {script_out} (serve it, edited or not, with --script)")
    if no_serve:
        return EXIT_OK
    tmp = Path(tempfile.mkdtemp(prefix="acflow-replay-gw-"))
    dump = None
    try:
        if not cert:
            cert, key = self_signed(tmp, sni or "vpn.replay.invalid")
            _say(f"no --cert: a self-signed certificate for {sni or 'vpn.replay.invalid'}, "
                 f"openconnect --servercert {pin_sha256(cert)}")
        keylog = Path(keylog_out) if keylog_out else tmp / "gateway-keys.log"
        raw = tmp / "raw.pcapng"
        if write:
            if not (shutil.which("dumpcap") and shutil.which("editcap")):
                _say("--write needs dumpcap and editcap (Wireshark's command-line tools)")
                return EXIT_ENV
            dump = subprocess.Popen(["dumpcap", "-q", "-i", interface, "-w", str(raw), "-s", "0"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            deadline = time.monotonic() + 10
            while not raw.exists() and time.monotonic() < deadline and dump.poll() is None:
                time.sleep(0.1)
            if not raw.exists():
                _say(f"dumpcap did not start on {interface}: {(dump.stderr.read() or b'').decode()[-300:]}")
                return EXIT_ENV
        try:
            gw = ScriptedGateway(script, Path(cert), Path(key), host=host, port=port, keylog=keylog, events=events,
                                 out=sys.stdout)
            gw.start()
        except OSError as e:
            _say(f"cannot serve on {host}:{port}: {e}")
            return EXIT_ENV
        stop = threading.Event()

        def on_signal(signum, frame):
            stop.set()

        old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            stop.wait(duration if duration else None)
        finally:
            gw.stop()
            for s, h in old.items():
                signal.signal(s, h)
        if dump is not None:
            time.sleep(0.3)  # the last frames
            dump.send_signal(signal.SIGTERM)
            try:
                dump.wait(10)
            except subprocess.TimeoutExpired:
                dump.kill()
            dump = None
            p = subprocess.run(["editcap", "--inject-secrets", f"tls,{keylog}", str(raw), str(write)],
                               capture_output=True, text=True, check=False)
            if p.returncode != 0:
                _say(f"editcap could not embed the keys: {p.stderr.strip()[-300:]}")
                return EXIT_ENV
            _say(f"capture of the replay with its keys embedded: {write}")
        return EXIT_OK
    finally:
        if dump is not None:
            dump.kill()
            dump.wait()
        shutil.rmtree(tmp, ignore_errors=True)
