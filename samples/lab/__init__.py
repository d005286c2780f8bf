"""The acflow lab: real openconnect ↔ ocserv sessions in network namespaces, captured with their key logs.

`python -m samples.lab SCENARIO…` or `acflow lab SCENARIO…`. See README.md ("The lab"). Entry points:
`samples.lab.runner.run_scenario` and `samples.lab.scenarios.SCENARIOS`.
"""
