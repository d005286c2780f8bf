"""An HTTP proxy for the lab's `http-proxy` scenario: `CONNECT host:port` only (what a VPN client behind a corporate
proxy sends, RFC 9110 §9.3.6), relaying bytes both ways until either side closes.

    python -m lab.proxy --listen 198.18.0.1:3128 --map vpn.acflow.test=198.18.0.1

``--map NAME=ADDRESS`` resolves the names clients ask for (the lab has no DNS). Each CONNECT is logged on stdout
(the request line and the answer), which the lab keeps as proxy.log. Runs until killed.
"""
from __future__ import annotations

import argparse
import socket
import sys
import threading


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def _serve(client: socket.socket, names: dict[str, str]) -> None:
    head = b""
    try:
        while b"\r\n\r\n" not in head and len(head) < 8192:
            chunk = client.recv(4096)
            if not chunk:
                return
            head += chunk
        line = head.split(b"\r\n", 1)[0].decode("latin-1")
        method, target, _version = (line.split(" ") + ["", ""])[:3]
        host, _, port = target.rpartition(":")
        if method != "CONNECT" or not host or not port.isdigit():
            client.sendall(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
            print(f"refused {line!r}", flush=True)
            return
        try:
            upstream = socket.create_connection((names.get(host, host), int(port)), timeout=10)
        except OSError as e:
            client.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            print(f"CONNECT {target}: 502 ({e})", flush=True)
            return
        upstream.settimeout(None)
        client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        print(f"CONNECT {target}: 200", flush=True)
        rest = head.split(b"\r\n\r\n", 1)[1]
        if rest:
            upstream.sendall(rest)
        t = threading.Thread(target=_pipe, args=(upstream, client), daemon=True)
        t.start()
        _pipe(client, upstream)
        t.join()
        upstream.close()
    finally:
        client.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lab.proxy", description=__doc__)
    ap.add_argument("--listen", required=True, help="ADDRESS:PORT")
    ap.add_argument("--map", action="append", default=[], help="NAME=ADDRESS (repeatable)")
    args = ap.parse_args(argv)
    names = dict(m.split("=", 1) for m in args.map)
    address, _, port = args.listen.rpartition(":")
    srv = socket.create_server((address, int(port)), reuse_port=False)
    print(f"listening on {args.listen}", flush=True)
    while True:
        client, _peer = srv.accept()
        threading.Thread(target=_serve, args=(client, names), daemon=True).start()


if __name__ == "__main__":
    sys.exit(main())
