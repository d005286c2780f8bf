"""Where a capture was taken, from what its pcapng interface blocks say (`CaptureInfo.interfaces`: the name and the
description the capturing program wrote for each interface).

A common mistake in support cases is a capture taken on the VPN's own virtual adapter: it holds the traffic inside
the tunnel (the user's applications, addressed from the tunnel address the gateway gave), never the VPN's
connection to the gateway, so no session can be found in it. The adapters, by the names and descriptions their
systems give them: a Linux tun device (``tun0``: openconnect's default; ``cscotun0``: Cisco Secure Client's), a
macOS ``utun`` device, a Windows adapter whose description names AnyConnect or Secure Client, a Virtual Miniport
adapter, Wintun or TAP-Windows (openconnect on Windows). A pcap file names no interface: nothing is said then.
"""
from __future__ import annotations

import re

__all__ = ["tunnel_devices", "describe_interface", "is_tunnel_device"]

_TUN_NAME = re.compile(r"^(?:tun|utun|cscotun|vpn)\d+$", re.IGNORECASE)
_TUN_DESCRIPTION = re.compile(r"anyconnect|secure client|virtual miniport|wintun|tap-windows", re.IGNORECASE)


def describe_interface(itf: dict) -> str:
    """``tun0``, or ``\\Device\\NPF_{…} (Cisco AnyConnect … Adapter)``: the name, and the description when there
    is one."""
    name, desc = itf.get("name"), itf.get("description")
    if name and desc and desc != name:
        return f"{name} ({desc})"
    return name or desc or f"interface {itf.get('id')}"


def is_tunnel_device(itf: dict) -> bool:
    """Whether the interface (``{name, description}``) is a VPN tunnel device by its name or description."""
    name, desc = itf.get("name") or "", itf.get("description") or ""
    return bool(_TUN_NAME.match(name) or _TUN_DESCRIPTION.search(desc))


def tunnel_devices(captures) -> list[tuple[str, dict]]:
    """(capture path, interface) of every interface of ``captures`` (`CaptureInfo`s) that is a VPN tunnel device
    by its name or description."""
    return [(ci.path, itf) for ci in captures for itf in getattr(ci, "interfaces", None) or []
            if is_tunnel_device(itf)]
