# acflow — the two set-up commands (see README.md):
#   make demo   install acflow alone (its Python dependencies into .venv/: no root, no apt packages, no tshark) and
#               analyze the bundled baseline sample
#   make test   install everything the tests need (apt packages as root: tshark, ocserv, openconnect, chromium…;
#               the test and replay extras), lint (ruff, rules in pyproject.toml) and run the whole test suite
# Without make: `pipx install .` or `python3 -m pip install --user .` (add `[replay]` for acflow replay).
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
# what the tests, the lab, the bench and the HTML check need (never needed to analyse a capture)
APT_PACKAGES = tshark tcpdump ocserv openconnect nftables iproute2 iputils-ping ethtool openssl curl util-linux \
               chromium gnutls-bin strongswan-charon strongswan-swanctl zip p7zip-full

.PHONY: demo test lint deps venv venv-base lab bench fuzz clean

deps:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	  if [ -n "$$missing" ]; then \
	    echo "installing:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  fi; \
	else echo "not root or no apt-get: install these yourself if missing: $(APT_PACKAGES)"; fi

$(BIN)/python:
	$(PYTHON) -m venv $(VENV) || { echo "cannot make $(VENV): install Python >= 3.11 with venv (python3-venv)" >&2; exit 1; }
	$(BIN)/pip install -q --upgrade pip

# acflow and its runtime dependencies only (what `make demo` needs)
$(VENV)/.acflow-base: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	@touch $@

# everything the tests need besides: the test extra (pytest, pyshark, ruff…) and the replay extra (scapy, pyroute2)
$(VENV)/.acflow-test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[test,replay]'
	@touch $@

venv-base: $(VENV)/.acflow-base

venv: $(VENV)/.acflow-test

demo: venv-base
	$(BIN)/acflow analyze samples/baseline/capture.pcapng --keylog samples/baseline/keys.log

lint: venv
	$(BIN)/ruff check .

test: deps venv lint
	$(BIN)/python -m pytest -q

# the lab writes the checkout's samples/ (`acflow lab` writes to the current directory unless --out)
lab: deps venv
	$(BIN)/python -m lab all

bench: deps venv
	$(BIN)/python -m bench

FUZZ_MINUTES ?= 10
fuzz: deps venv
	$(BIN)/python -m fuzz --minutes $(FUZZ_MINUTES)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis
