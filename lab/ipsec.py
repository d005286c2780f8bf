"""IPsec captures for acflow's IPsec recognition (analyzer/ipsec.py): two strongSwan charon daemons (IKEv2, PSK) in
the lab's namespaces, dumpcap on the client's veth. Writes `<out>/<case>/`: capture.pcapng, ipsec.json (what the
daemons logged: not the lab's facts.json schema), charon-gateway.log, charon-client.log, the swanctl.conf of both.

    sudo python -m lab.ipsec [--out samples/ipsec] [CASE ...]      # cases: ikev2, ikev1, ikev2-no-proposal

Each charon runs in its own mount namespace with a private /run (two daemons on one machine would share its pid
file and socket otherwise). The kernel the lab runs on here has no IPsec SA support (xfrm: "Function not
implemented"), so the CHILD_SA is never installed and no ESP packet is sent: the captures hold IKE only — the
IKE_SA_INIT in the clear (proposals, Vendor IDs, notifies), IKE_AUTH on UDP 4500 (strongSwan moves there after the
IKE_SA_INIT) and the INFORMATIONAL exchanges. `ikev2-no-proposal`: the gateway accepts only another IKE proposal
and answers the IKE_SA_INIT with NO_PROPOSAL_CHOSEN.
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import time
from pathlib import Path

from .netns import CLIENT_OUTER, GW_OUTER, Lab, LabError, require_tools
from .runs import work_dir

CHARON = "/usr/lib/ipsec/charon"
PSK = "acflow-lab-psk"

CASES = {
    "ikev2": {"description": "IKEv2 with a pre-shared key: IKE_SA_INIT, IKE_AUTH on UDP 4500; the CHILD_SA fails in "
                             "the lab's kernel (no IPsec SA support): no ESP",
              "gateway_proposal": "aes256-sha256-modp2048"},
    "ikev1": {"description": "IKEv1 Main Mode with a pre-shared key (legacy IPsec clients, L2TP/IPsec): Main Mode, "
                             "then Quick Mode for the CHILD_SA, which fails in the lab's kernel: no ESP",
              "gateway_proposal": "aes256-sha256-modp2048", "version": 1},
    "ikev2-no-proposal": {"description": "IKEv2 whose proposal the gateway does not accept: the IKE_SA_INIT is "
                                         "answered with NO_PROPOSAL_CHOSEN",
                          "gateway_proposal": "aes128-sha1-modp1024"},
}
CLIENT_PROPOSAL = "aes256-sha256-modp2048"


def _strongswan_conf(d: Path) -> str:
    return f"""charon {{
  load_modular = yes
  send_vendor_id = yes
  install_routes = no
  plugins {{
    include /etc/strongswan.d/charon/*.conf
    vici {{ socket = unix://{d}/charon.vici }}
  }}
  filelog {{ log {{ path = {d}/charon.log
                    time_format = %s
                    default = 1 }} }}
}}
swanctl {{ socket = unix://{d}/charon.vici }}
"""


def _swanctl_conf(local: str, remote: str | None, me: str, peer: str, proposal: str, local_ts: str,
                  remote_ts: str, version: int = 2) -> str:
    remote_line = f"    remote_addrs = {remote}\n" if remote else ""
    return f"""connections {{
  ac {{
    version = {version}
    local_addrs = {local}
{remote_line}    proposals = {proposal}
    local {{ auth = psk
            id = {me} }}
    remote {{ auth = psk
             id = {peer} }}
    children {{ net {{ local_ts = {local_ts}
                     remote_ts = {remote_ts}
                     esp_proposals = aes128-sha256 }} }}
  }}
}}
secrets {{ ike-1 {{ id-1 = {me}
                  id-2 = {peer}
                  secret = "{PSK}" }} }}
"""


def run_case(name: str, out_root: Path) -> Path:
    case = CASES[name]
    require_tools(("dumpcap", "ip", "unshare", "swanctl"))
    if not Path(CHARON).exists():
        raise LabError(f"{CHARON} missing: apt-get install strongswan-charon strongswan-swanctl")
    work = work_dir(f"acflow-ipsec-{name}-")
    sides = {"gateway": (GW_OUTER, None, "gw.acflow.test", "client.acflow.test", case["gateway_proposal"],
                         "198.19.1.0/24", "198.19.2.0/24"),
             "client": (CLIENT_OUTER, GW_OUTER, "client.acflow.test", "gw.acflow.test", CLIENT_PROPOSAL,
                        "198.19.2.0/24", "198.19.1.0/24")}
    for side, args in sides.items():
        d = work / side
        d.mkdir()
        (d / "strongswan.conf").write_text(_strongswan_conf(d))
        (d / "swanctl.conf").write_text(_swanctl_conf(*args, version=case.get("version", 2)))
    capture = work / "capture.pcapng"
    with Lab() as lab:
        dump = lab.start_capture(capture, work / "dumpcap.log")
        for side, ns in (("gateway", lab.gw_ns), ("client", lab.client_ns)):
            d = work / side
            lab.start(ns, f"charon-{side}",
                      ["unshare", "-m", "sh", "-c", f"mount -t tmpfs tmpfs /run && exec {CHARON}"],
                      d / "stdout.log", env={"STRONGSWAN_CONF": str(d / "strongswan.conf"),
                                             "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
        deadline = time.time() + 10
        while time.time() < deadline and not all((work / s / "charon.vici").exists() for s in sides):
            time.sleep(0.2)
        for side, ns in (("gateway", lab.gw_ns), ("client", lab.client_ns)):
            d = work / side
            lab.ns_run(ns, ["env", f"STRONGSWAN_CONF={d / 'strongswan.conf'}", "swanctl", "--load-all", "--file",
                            str(d / "swanctl.conf")])
        init = lab.ns_run(lab.client_ns, ["env", f"STRONGSWAN_CONF={work / 'client' / 'strongswan.conf'}", "swanctl",
                                          "--initiate", "--child", "net", "--timeout", "10"], check=False)
        (work / "initiate.log").write_text(init.stdout + init.stderr)
        time.sleep(1.5)
        dump.stop()
    out = out_root / name
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    shutil.copy(capture, out / "capture.pcapng")
    for side in sides:
        shutil.copy(work / side / "charon.log", out / f"charon-{side}.log")
        shutil.copy(work / side / "swanctl.conf", out / f"swanctl-{side}.conf")
    logs = {s: (work / s / "charon.log").read_text() for s in sides}
    facts = {"case": name, "description": case["description"], "client": CLIENT_OUTER, "gateway": GW_OUTER,
             "ike_sa_established": bool(re.search(r"IKE_SA ac\[\d+\] established", logs["client"])),
             # the IKE_SA_INIT refused (a CHILD_SA refused reads "received NO_PROPOSAL_CHOSEN notify, no CHILD_SA")
             "ike_proposal_refused": "received NO_PROPOSAL_CHOSEN notify error" in logs["client"],
             "child_sa_failed": any(x in logs["client"] for x in ("failed to establish CHILD_SA",
                                                                  "no CHILD_SA built", "unable to add SAD entry")),
             "initiate": (work / "initiate.log").read_text().splitlines()[-3:]}
    (out / "ipsec.json").write_text(json.dumps(facts, indent=2, sort_keys=True) + "\n")
    shutil.rmtree(work, ignore_errors=True)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lab.ipsec", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("samples/ipsec"))
    ap.add_argument("cases", nargs="*", default=list(CASES))
    a = ap.parse_args(argv)
    for name in a.cases:
        if name not in CASES:
            print(f"unknown case {name}; known: {', '.join(CASES)}", file=sys.stderr)
            return 2
        try:
            print(f"[ipsec] {name}: wrote {run_case(name, a.out)}")
        except LabError as e:
            print(f"[ipsec] {name}: FAILED: {e}", file=sys.stderr)
            return 5
    return 0


if __name__ == "__main__":
    sys.exit(main())
