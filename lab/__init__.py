"""The acflow lab: real peers in network namespaces, captured with their key logs and ground truth.

Part of the source tree, not of the installed analyzer (pyproject installs analyzer, dissectors and replay only):
the lab writes the samples the tests and the bench read, it is not needed to analyze a capture.

* `python -m lab SCENARIO…` (or `acflow lab SCENARIO…` from a checkout): openconnect against ocserv, one scenario
  each (`lab.scenarios`, run by `lab.runner.run_scenario`), into samples/<scenario>/;
* `python -m lab.scripted --case NAME…`: openconnect against the scripted gateway (`replay.gateway`), into
  samples/scripted/<case>/ (`lab.scripted`);
* `bench/lab.py` builds the benchmark's bulk captures from the same pieces.

Shared pieces: `lab.netns` (namespaces, processes whose output is stamped line by line, `read_stamped`,
`require_tools`), `lab.pki` (a throw-away CA and gateway certificate), `lab.client` (the client's vpnc-script,
openconnect's arguments, the split authenticate / fetch-profile / connect flow) and `lab.runs` (the loop over named
runs with clean-up on signals; a run's work directory, action record and outputs). See README.md ("The lab").
"""
