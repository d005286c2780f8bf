"""A TLS-inspecting middlebox for the lab's `tls-inspection` scenario: what a corporate firewall or proxy with "SSL
decryption" does to the VPN's TLS connection — it ends the client's TLS session itself, with a certificate for the
gateway's name issued by its own CA (which managed laptops trust), opens a second TLS session to the gateway, and
relays the plaintext between the two. UDP (DTLS) passes it untouched.

    python -m lab.inspect --listen 198.18.0.1:8443 --upstream 198.18.0.1:443 --cert C --key K [--keylog F]

The lab redirects the client's TCP to port 443 here (nftables in the gateway's namespace), so the client still sees
the gateway's address. ``--keylog``: the secrets of both sessions (NSS key log format; Python's ssl). Each
connection is logged on stdout. Runs until killed.
"""
from __future__ import annotations

import argparse
import socket
import ssl
import sys
import threading


def _pipe(src: ssl.SSLSocket, dst: ssl.SSLSocket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except (OSError, ssl.SSLError):
        pass
    finally:
        for s in (src, dst):
            try:
                s.close()
            except OSError:
                pass


def _serve(raw: socket.socket, peer, server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext,
           upstream: tuple[str, int]) -> None:
    try:
        down = server_ctx.wrap_socket(raw, server_side=True)
    except (OSError, ssl.SSLError) as e:
        print(f"{peer[0]}:{peer[1]}: client handshake failed: {e}", flush=True)
        raw.close()
        return
    sni = getattr(down, "sni", None)
    try:
        up = client_ctx.wrap_socket(socket.create_connection(upstream, timeout=10), server_hostname=sni)
        up.settimeout(None)
    except (OSError, ssl.SSLError) as e:
        print(f"{peer[0]}:{peer[1]}: upstream {upstream[0]}:{upstream[1]} failed: {e}", flush=True)
        down.close()
        return
    print(f"{peer[0]}:{peer[1]}: relaying to {upstream[0]}:{upstream[1]} ({down.version()} / {up.version()})",
          flush=True)
    threading.Thread(target=_pipe, args=(up, down), daemon=True).start()
    _pipe(down, up)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lab.inspect", description=__doc__.splitlines()[0])
    ap.add_argument("--listen", required=True, help="ADDRESS:PORT")
    ap.add_argument("--upstream", required=True, help="the gateway, ADDRESS:PORT")
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--keylog")
    args = ap.parse_args(argv)
    host, _, port = args.listen.rpartition(":")
    uhost, _, uport = args.upstream.rpartition(":")
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(args.cert, args.key)
    server_ctx.sni_callback = lambda sock, name, _ctx: setattr(sock, "sni", name) or None
    client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_ctx.check_hostname = False
    client_ctx.verify_mode = ssl.CERT_NONE  # (an inspecting box checks the gateway its own way: not the lab's point)
    if args.keylog:
        server_ctx.keylog_filename = client_ctx.keylog_filename = args.keylog
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((host, int(port)))
    srv.listen(16)
    print(f"listening on {host}:{port}, upstream {uhost}:{uport}", flush=True)
    while True:
        raw, peer = srv.accept()
        threading.Thread(target=_serve, args=(raw, peer, server_ctx, client_ctx, (uhost, int(uport))),
                         daemon=True).start()


if __name__ == "__main__":
    sys.exit(main())
