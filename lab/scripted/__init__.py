"""Scripted-gateway cases: real openconnect against `replay.gateway` (the scripted gateway) in the lab's namespaces.

`python -m lab.scripted --case NAME…|all [--out DIR]` (root), `python -m lab.scripted --list`. The cases and their
expected effects are in `lab.scripted.cases`; the committed captures are under samples/scripted/ (see its README).
"""
