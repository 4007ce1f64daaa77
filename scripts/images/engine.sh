#!/usr/bin/env bash
# A Docker engine for `make images`, the container tests and the real test node, run as a
# process this script owns: `start` launches dockerd (Debian's docker.io, with its own
# containerd) unless an engine already answers, `stop` ends exactly the dockerd it started
# (by the pid it recorded). Called by .ci/run and by `make engine-up` / `make engine-down`.
#
#   scripts/images/engine.sh start|stop|status
#
# VOICE_ENGINE_DIR (default /var/lib/voice-service/engine) holds the pid, the log and the
# daemon's config; the image store stays in dockerd's default data root, so the build cache
# outlives a CI run, up to VOICE_BUILD_CACHE_LIMIT (default 16GB).
set -euo pipefail

ENGINE_DIR=${VOICE_ENGINE_DIR:-/var/lib/voice-service/engine}
PID_FILE=$ENGINE_DIR/dockerd.pid
LOG_FILE=$ENGINE_DIR/dockerd.log
BUILD_CACHE_LIMIT=${VOICE_BUILD_CACHE_LIMIT:-16GB}
DOCKER=${DOCKER:-docker}

answers() { "$DOCKER" info --format '{{.ServerVersion}}' >/dev/null 2>&1; }

owned_pid() {
    [[ -s $PID_FILE ]] || return 1
    local pid; pid=$(<"$PID_FILE")
    [[ -d /proc/$pid ]] && [[ $(tr '\0' ' ' </proc/"$pid"/cmdline) == dockerd* ]] && echo "$pid"
}

start() {
    if answers; then
        echo "engine: a Docker engine already answers ($("$DOCKER" info --format '{{.ServerVersion}}')); using it"
        return 0
    fi
    command -v dockerd >/dev/null || { echo "engine: no dockerd (apt-get install docker.io)" >&2; return 1; }
    mkdir -p "$ENGINE_DIR"
    # BuildKit's cache is bounded: each change of the inference image's pins leaves a 6 GB
    # layer and the pip cache behind, and the disk is shared. Least recently used goes first.
    printf '{"builder": {"gc": {"enabled": true, "defaultKeepStorage": "%s"}}}\n' "$BUILD_CACHE_LIMIT" >"$ENGINE_DIR/daemon.json"
    # setsid: the daemon outlives this shell; its pid is the one recorded and later stopped.
    setsid dockerd --config-file "$ENGINE_DIR/daemon.json" --pidfile "$ENGINE_DIR/dockerd.self.pid" >"$LOG_FILE" 2>&1 < /dev/null &
    echo $! >"$PID_FILE"
    for _ in $(seq 1 120); do
        answers && { echo "engine: dockerd $(<"$PID_FILE") is up (log: $LOG_FILE)"; return 0; }
        owned_pid >/dev/null || { echo "engine: dockerd exited; its log:" >&2; tail -20 "$LOG_FILE" >&2; return 1; }
        sleep 0.5
    done
    echo "engine: dockerd did not answer within 60 s; its log: $LOG_FILE" >&2
    return 1
}

stop() {
    local pid
    if ! pid=$(owned_pid); then
        echo "engine: no dockerd started by this script is running"
        rm -f "$PID_FILE"
        return 0
    fi
    kill -TERM "$pid"
    for _ in $(seq 1 60); do
        [[ -d /proc/$pid ]] || { rm -f "$PID_FILE"; echo "engine: dockerd $pid stopped"; return 0; }
        sleep 0.5
    done
    echo "engine: dockerd $pid still running after 30 s; sending KILL" >&2
    kill -KILL "$pid"
    rm -f "$PID_FILE"
}

case ${1:-} in
    start) start ;;
    stop) stop ;;
    status) if answers; then echo "engine: up"; else echo "engine: down"; exit 1; fi ;;
    *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
