"""An HTTP proxy for the lab's `http-proxy` scenario: `CONNECT host:port` only (what a VPN client behind a corporate
proxy sends, RFC 9110 §9.3.6), relaying bytes both ways until either side closes.

    python -m lab.proxy --listen 198.18.0.1:3128 --map vpn.acflow.test=198.18.0.1 [--basic USER:PASSWORD]

``--map NAME=ADDRESS`` resolves the names clients ask for (the lab has no DNS). ``--basic``: a CONNECT without
these credentials (Proxy-Authorization: Basic, RFC 7617) is answered 407 with a Proxy-Authenticate challenge and a
short body, on a connection kept open for the next attempt. Each CONNECT is logged on stdout (the request line
and the answer), which the lab keeps as proxy.log. Runs until killed.
"""
from __future__ import annotations

import argparse
import base64
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


def _serve(client: socket.socket, names: dict[str, str], basic: str | None = None) -> None:
    head = b""
    try:
        while True:
            while b"\r\n\r\n" not in head and len(head) < 8192:
                chunk = client.recv(4096)
                if not chunk:
                    return
                head += chunk
            fields = head.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
            given = next((f.split(":", 1)[1].strip() for f in fields[1:]
                          if f.lower().startswith("proxy-authorization:")), "")
            if basic is None or given == "Basic " + base64.b64encode(basic.encode()).decode():
                break
            body = b"proxy authentication required\n"
            client.sendall(b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"lab\"\r\n"
                           b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
            print(f"{fields[0]}: 407", flush=True)
            head = head.split(b"\r\n\r\n", 1)[1]
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
    ap.add_argument("--basic", default=None, help="USER:PASSWORD the proxy asks for (407 without them)")
    args = ap.parse_args(argv)
    names = dict(m.split("=", 1) for m in args.map)
    address, _, port = args.listen.rpartition(":")
    srv = socket.create_server((address, int(port)), reuse_port=False)
    print(f"listening on {args.listen}", flush=True)
    while True:
        client, _peer = srv.accept()
        threading.Thread(target=_serve, args=(client, names, args.basic), daemon=True).start()


if __name__ == "__main__":
    sys.exit(main())
