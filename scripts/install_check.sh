#!/usr/bin/env bash
# `make install-check`: the README's install lines, taken from README.md and run as written in a
# new virtualenv, then a first question in IPython with nothing configured, which the bundled
# model must answer (no server, no key, no network beyond the package index).
# PIP_NO_CACHE_DIR=1 times a machine that has never downloaded the packages.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The lines of the README's "Install" section that start with `pip install`, comments and all.
mapfile -t lines < <(awk '/^## Install/{on=1; next} /^## /{on=0} on && /^pip install/' README.md)
[ "${#lines[@]}" -ge 1 ] || { echo "install-check: no 'pip install' line under '## Install' in README.md" >&2; exit 1; }

$PYTHON -m venv "$work/venv"
# shellcheck disable=SC1091
source "$work/venv/bin/activate"  # as a user would: `pip` and `ipython` are the new environment's
started=$(date +%s)
for line in "${lines[@]}"; do
    echo "+ $line"
    eval "$line"
done
installed=$(date +%s)

# A first question, as in a terminal IPython: nothing configured, a profile and history of its own.
export IPYTHONDIR="$work/ipython" ACYTOO_HISTORY_DB="$work/history.sqlite3"
unset ACYTOO_URL ACYTOO_PROVIDER ACYTOO_MODEL OPENAI_API_KEY OPENAI_BASE_URL
answer=$(cd "$work" && ipython --no-banner --ext=acytoo_magic -c $'%%acytoo\nSay hello in five words.')
echo "$answer"
status=$(printf '%s\n' "$answer" | tail -n 1)
case "$status" in
    "— local · smollm2 · "*) ;;
    *) echo "install-check: the bundled model did not answer (last line: $status)" >&2; exit 1 ;;
esac
echo "install-check: the README's ${#lines[@]} install lines took $((installed - started)) s; the first answer came from the bundled model"
