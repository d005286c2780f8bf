"""Lab scenarios: one real openconnect client against one real ocserv gateway, per scenario.

A scenario is data: gateway configuration overrides, client options and the actions taken once the tunnel is
up. To add one, append a `Scenario(...)` to `SCENARIOS` (see the README section "Adding a lab scenario").
"""
from __future__ import annotations

from dataclasses import dataclass, field

# TLS 1.3 allowed (GnuTLS priority strings, as ocserv's tls-priorities takes them).
PRIO_TLS13 = "NORMAL:%SERVER_PRECEDENCE:%COMPAT:-VERS-SSL3.0:-VERS-TLS1.0:-VERS-TLS1.1"
# TLS 1.2 only, RSA key exchange only: decryptable with the gateway's private key.
PRIO_TLS12_RSA = "NORMAL:%SERVER_PRECEDENCE:%COMPAT:-VERS-ALL:+VERS-TLS1.2:-KX-ALL:+RSA"


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    gateway: dict = field(default_factory=dict)  # ocserv.conf overrides (key -> value or list of values)
    client_args: tuple[str, ...] = ()
    password: str = "acflow-pass-1"  # the password the client types (the user's real one is USER_PASSWORD)
    groups: tuple[str, ...] = ()  # groups the lab user belongs to (ocserv plain passwd)
    authgroup: str | None = None  # openconnect --authgroup
    block_udp: bool = False  # nftables drop of UDP in the gateway namespace
    outer_mtu: int | None = None  # veth MTU
    force_tun_mtu: int | None = None  # the client's script sets this MTU on the tun instead of the granted one
    pings: int = 5  # small pings (56 data bytes) through the tunnel
    big_pings: int = 0  # then this many pings of big_ping_size data bytes
    big_ping_size: int = 1300
    big_ping_df: bool = True
    hold: float = 0.0  # seconds to keep the tunnel up after the pings (e.g. to see DTLS retries)
    expect_connect: bool = True
    wait_dtls: bool = True  # wait for "Established DTLS" before pinging
    downloader: bool = False  # --authenticate, curl GET of the profile, then --cookie connect

    def ping_plan(self) -> list[tuple[int, int, bool]]:
        """(count, data size, DF) for each ping run, in order."""
        plan = [(self.pings, 56, False)] if self.pings else []
        if self.big_pings:
            plan.append((self.big_pings, self.big_ping_size, self.big_ping_df))
        return plan


USER = "alice"
USER_PASSWORD = "acflow-pass-1"

SCENARIOS: dict[str, Scenario] = {s.name: s for s in [
    Scenario("baseline", "TLS 1.3, DTLS 1.2 with PSK-NEGOTIATE, 5 pings, clean disconnect",
             gateway={"tls-priorities": PRIO_TLS13}),
    Scenario("dtls-blocked", "UDP dropped at the gateway: two rounds of DTLS ClientHellos, traffic over CSTP",
             gateway={"tls-priorities": PRIO_TLS13}, block_udp=True, wait_dtls=False, pings=10, hold=88.0),
    Scenario("legacy-dtls", "gateway without PSK: X-DTLS-Master-Secret session resumption, DTLS 1.2",
             gateway={"tls-priorities": PRIO_TLS13, "dtls-psk": "false", "dtls-legacy": "true"}),
    Scenario("legacy-dtls09", "gateway without PSK, client limited to Cisco's pre-standard DTLS 0x0100 "
             "(AES128-SHA)",
             gateway={"tls-priorities": PRIO_TLS13, "dtls-psk": "false", "dtls-legacy": "true"},
             client_args=("--dtls-ciphers=AES128-SHA",)),
    Scenario("group-select", "three groups with aliases; the client picks a non-default one",
             gateway={"tls-priorities": PRIO_TLS13,
                      "select-group": ["sales[Sales Team]", "engineering[Engineering VPN]", "ops[Operations]"],
                      "default-select-group": "DEFAULT"},
             groups=("sales", "engineering", "ops"), authgroup="Engineering VPN"),
    Scenario("mtu", "small outer MTU and gateway mtu: granted MTU differs from the request; inner packets "
             "bigger than the tunnel MTU",
             gateway={"tls-priorities": PRIO_TLS13, "mtu": "1100"}, outer_mtu=1300,
             client_args=("--base-mtu=1300",), force_tun_mtu=1400, big_pings=3, big_ping_size=1300),
    Scenario("auth-fail", "wrong password: the gateway rejects the login",
             gateway={"tls-priorities": PRIO_TLS13}, password="wrong-password", expect_connect=False, pings=0),
    Scenario("tls12-rsa", "TLS 1.2 with RSA key exchange (decryptable with the gateway's private key), "
             "DTLS PSK-NEGOTIATE from the TLS 1.2 exporter",
             gateway={"tls-priorities": PRIO_TLS12_RSA}),
    Scenario("downloader", "gateway offers a client profile: --authenticate, the profile fetched by a "
             "separate TLS session with the webvpn cookie, then --cookie connect",
             gateway={"tls-priorities": PRIO_TLS13}, downloader=True),
]}
