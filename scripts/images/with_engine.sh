#!/usr/bin/env bash
# Runs a command with a Docker engine where this machine can have one, for `make demo`:
# Debian's packages are installed when missing (as root, with apt-get: `make engine-packages`),
# a dockerd is started when none answers (scripts/images/engine.sh), and that dockerd, and only
# that one, is stopped by its pid when the command ends. Where no engine can run (not root, no
# apt-get, a failed install), one line says why and the command runs anyway: the demo then
# takes its local path and says so too.
#
#   scripts/images/with_engine.sh COMMAND [ARG...]
set -uo pipefail
cd "$(dirname "$0")/../.."

say() { printf 'engine: %s\n' "$*"; }
started=

if bash scripts/images/engine.sh status >/dev/null 2>&1; then
    :  # an engine answers: use it, leave it as it is
elif [[ $(id -u) != 0 ]] || ! command -v apt-get >/dev/null; then
    say "no Docker engine answers and none can be set up here (needs root and apt-get); the pods cannot run for real"
elif ! make --no-print-directory engine-packages; then
    say "installing Debian's Docker packages failed (above); the pods cannot run for real"
elif bash scripts/images/engine.sh start; then
    started=1
    trap 'bash scripts/images/engine.sh stop' EXIT
else
    say "dockerd did not start (its log is above); the pods cannot run for real"
fi

"$@"
status=$?
[[ -z $started ]] || say "stopping the dockerd this run started (the images stay in its store)"
exit "$status"
