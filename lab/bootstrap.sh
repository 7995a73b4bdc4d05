#!/usr/bin/env bash
# Set up what `make` needs on a fresh machine, and only what is missing:
#   1. Debian packages (PostgreSQL 15, pgBackRest, BIND 9 and its tools, promtool, zstd):
#      installed with apt-get when root, else the exact command is printed and we stop;
#   2. .venv (from the system python3.11, so that the lab's unprivileged user can run it),
#      with the pinned requirements, remade when a requirements file changes;
#   3. .collections/ansible_collections/auditron/dr -> the repository, so that ansible finds
#      this collection by its FQCN;
#   4. ansible-test's pip bootstrap script, which it would download from a host out of reach
#      here: a local one that calls ensurepip.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf 'setup: %s\n' "$*"; }

# --- 1. system packages --------------------------------------------------------------------
declare -A need=(
  [/usr/lib/postgresql/15/bin/initdb]=postgresql-15
  [/usr/lib/postgresql/15/bin/pg_amcheck]=postgresql-15
  [/usr/bin/psql]=postgresql-client-15
  [/usr/bin/pgbackrest]=pgbackrest
  [/usr/sbin/named]=bind9
  [/usr/bin/nsupdate]=bind9-dnsutils
  [/usr/bin/dig]=bind9-dnsutils
  [/usr/bin/promtool]=prometheus
  [/usr/bin/zstd]=zstd
  [/usr/bin/shellcheck]=shellcheck
)
# A test hook: one more requirement, "path=package", to see how a missing one is reported.
if [ -n "${AUDITRON_BOOTSTRAP_EXTRA_REQUIREMENT:-}" ]; then
  need[${AUDITRON_BOOTSTRAP_EXTRA_REQUIREMENT%%=*}]=${AUDITRON_BOOTSTRAP_EXTRA_REQUIREMENT#*=}
fi
missing=()
for path in "${!need[@]}"; do
  [ -x "$path" ] || missing+=("${need[$path]}")
done
python_base=""
for candidate in /usr/bin/python3.11 "$(command -v python3.11 || true)"; do
  if [ -n "$candidate" ] && [ -x "$candidate" ] && "$candidate" -c 'import venv, ensurepip' 2>/dev/null; then
    python_base=$candidate; break
  fi
done
[ -n "$python_base" ] || missing+=(python3.11 python3.11-venv)
if [ ${#missing[@]} -gt 0 ]; then
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
  if [ "$(id -u)" = 0 ]; then
    say "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # prometheus and bind9 would start their own services: the lab runs its own instances.
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    if ! apt-get install -y --no-install-recommends "${missing[@]}" >/tmp/auditron-apt.log 2>&1; then
      apt-get update >>/tmp/auditron-apt.log 2>&1 || true
      apt-get install -y --no-install-recommends "${missing[@]}" >>/tmp/auditron-apt.log 2>&1 \
        || { say "apt-get install ${missing[*]} failed: $(tail -1 /tmp/auditron-apt.log)"; exit 1; }
    fi
    rm -f /usr/sbin/policy-rc.d; trap - EXIT
    if [ -z "$python_base" ]; then python_base=/usr/bin/python3.11; fi
  else
    say "missing Debian packages: ${missing[*]}"
    say "run: sudo apt-get install -y ${missing[*]}"
    exit 1
  fi
fi

# --- 2. the venv ----------------------------------------------------------------------------
stamp=.venv/.installed
if [ ! -x .venv/bin/python ] || [ ! -f "$stamp" ] \
   || [ -n "$(find requirements -newer "$stamp" -type f 2>/dev/null | head -1)" ]; then
  if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
    rm -rf .venv
    say "creating .venv from $python_base"
    "$python_base" -m venv .venv
  fi
  say "installing pinned Python requirements into .venv (a minute or two the first time)"
  # --no-compile: pip would compile every file it installs, the ~100 collections of the pinned
  # `ansible` package included, of which a few are ever imported; Python compiles those on first
  # import instead. 60 s instead of 101 s for a fresh venv here.
  if ! .venv/bin/pip install --quiet --disable-pip-version-check --no-compile -r requirements/test.txt \
        -c requirements/constraints.txt >/tmp/auditron-pip.log 2>&1; then
    grep -v '^WARNING: Location' /tmp/auditron-pip.log | tail -5
    say "pip install failed (log: /tmp/auditron-pip.log)"
    exit 1
  fi
  touch "$stamp"
fi

# --- 3. this collection, findable by FQCN -----------------------------------------------------
mkdir -p .collections/ansible_collections/auditron
link=.collections/ansible_collections/auditron/dr
if [ "$(readlink "$link" 2>/dev/null)" != "../../.." ]; then
  rm -rf "$link"
  ln -s ../../.. "$link"
fi

# --- 4. ansible-test's pip bootstrap, offline -------------------------------------------------
cache="$HOME/.ansible/test/cache"
if [ ! -s "$cache/get_pip_24_2.py" ]; then
  mkdir -p "$cache"
  cat > "$cache/get_pip_24_2.py" <<'PY'
# Stand-in for get-pip.py (its host cannot be reached here): the interpreter's own ensurepip.
import ensurepip
ensurepip.bootstrap()
PY
fi
exit 0
