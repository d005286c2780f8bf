# acflow — the two set-up commands (see README.md):
#   make demo   install everything acflow needs and analyze the bundled baseline sample
#   make test   install everything the tests need, lint (ruff, rules in pyproject.toml) and run the whole test suite
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
APT_PACKAGES = tshark tcpdump ocserv openconnect nftables iproute2 iputils-ping ethtool openssl curl util-linux \
               chromium gnutls-bin

.PHONY: demo test lint deps venv lab bench fuzz clean

deps:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	  if [ -n "$$missing" ]; then \
	    echo "installing:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  fi; \
	else echo "not root or no apt-get: install these yourself if missing: $(APT_PACKAGES)"; fi

$(BIN)/acflow: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	@touch $@

venv: $(BIN)/acflow

demo: deps venv
	$(BIN)/acflow analyze samples/baseline/capture.pcapng --keylog samples/baseline/keys.log

lint: venv
	$(BIN)/ruff check .

test: deps venv lint
	$(BIN)/python -m pytest -q

lab: deps venv
	$(BIN)/acflow lab all

bench: deps venv
	$(BIN)/python -m bench

FUZZ_MINUTES ?= 10
fuzz: deps venv
	$(BIN)/python -m fuzz --minutes $(FUZZ_MINUTES)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis
