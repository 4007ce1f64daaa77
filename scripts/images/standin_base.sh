#!/usr/bin/env bash
# Local stand-ins for the base images the Dockerfiles name, for machines that reach no image
# registry. Called by scripts/images/bases.sh (`make bases`, a step of `make images`) for a
# reference the engine lacks; it builds a root filesystem from Debian packages with
# mmdebstrap and `docker import`s it under that same reference, so the Dockerfiles build
# unchanged. The image carries the label voice-service.stand-in, which says what it is.
#
#   scripts/images/standin_base.sh python:3.11.14-slim-bookworm
#
# Known references: python:3.11*-slim* (Debian bookworm's python3.11, with `python` and
# `python3` on PATH as in the official image; its patch release is Debian's, not the tag's).
set -euo pipefail

REFERENCE=${1:?usage: $0 <image reference>}
DOCKER=${DOCKER:-docker}
MIRROR=${VOICE_DEBIAN_MIRROR:-http://deb.debian.org/debian}

case $REFERENCE in
    python:3.11*-slim*)
        suite=bookworm
        # libpython3.11-dev: the official image has Python's headers (/usr/local/include),
        # which Triton's run-time builds of its GPU launchers include.
        packages=python3.11,python3.11-venv,libpython3.11-dev,ca-certificates
        python=python3.11
        ;;
    *)
        echo "standin: no stand-in recipe for $REFERENCE (known: python:3.11*-slim*)" >&2
        exit 2
        ;;
esac
command -v mmdebstrap >/dev/null || { echo "standin: needs mmdebstrap (apt-get install mmdebstrap)" >&2; exit 1; }

echo "standin: $REFERENCE is not in the engine and no registry is used: building a stand-in from Debian $suite packages ($packages)"
# The official image's layout where the Dockerfiles rely on it: `python` and `python3` in
# /usr/local/bin. apt's lists and caches are dropped, as the official slim image does.
mmdebstrap --quiet --variant=minbase --include="$packages" \
    --customize-hook="ln -sf /usr/bin/$python \"\$1/usr/local/bin/python\"" \
    --customize-hook="ln -sf /usr/bin/$python \"\$1/usr/local/bin/python3\"" \
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/* "$1"/usr/share/doc/* "$1"/usr/share/man/*' \
    "$suite" - "$MIRROR" \
  | "$DOCKER" import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8' \
    --change 'CMD ["python3"]' \
    --change "LABEL voice-service.stand-in=\"Debian $suite $python, for $REFERENCE\"" \
    --message "voice-service stand-in for $REFERENCE" \
    - "$REFERENCE" >/dev/null
echo "standin: $REFERENCE is a local stand-in now ($("$DOCKER" image inspect --format '{{.Size}}' "$REFERENCE" | awk '{printf "%.0f MB", $1/1e6}'))"
