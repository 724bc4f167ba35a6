#!/usr/bin/env bash
# Install everything the tests need and run the whole test suite.
# Debian packages (real clients and servers the end-to-end tests drive) need root; a virtualenv
# in .venv holds Berth and its test dependencies. Extra arguments go to pytest.
# PostgreSQL: only its binaries are used. The tests initdb and start a throwaway cluster of their
# own (tests/conftest.py, postgres_server) and remove it at the end; BERTH_TEST_POSTGRES_URL
# points them at an existing server instead. In CI (CI set) a server that cannot start fails.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(skopeo containerd docker.io postgresql python3-venv ca-certificates)

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "== installing Debian packages: ${missing[*]}"
  as_root apt-get update -q
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  echo "== creating .venv"
  "$PYTHON" -m venv .venv
fi
echo "== installing Berth and its test dependencies"
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[test]'

echo "== ruff"
.venv/bin/ruff check registry migrations tests
.venv/bin/ruff format --check registry migrations tests

echo "== pytest"
set +e
.venv/bin/python -m pytest "$@"
status=$?
set -e
# pytest's 5 means no test ran: that is a failure here, never a pass.
exit "$status"
