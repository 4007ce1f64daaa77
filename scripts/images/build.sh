#!/usr/bin/env bash
# `make images`: builds Dockerfile.operator and Dockerfile.inference with BuildKit and prints
# each image's size and build time. First it makes sure every base image the Dockerfiles
# name is in the engine: IMAGE_BASES=local (the default) makes a local stand-in from Debian
# packages for a missing one (scripts/images/standin_base.sh) and never contacts a registry;
# IMAGE_BASES=pull pulls the real bases first (a connected machine).
#
#   scripts/images/build.sh [operator] [inference]      (default: both)
#
# OPERATOR_IMAGE, INFERENCE_IMAGE: the tags (the Makefile passes the chart's defaults).
# IMAGE_CA_BUNDLE: a CA bundle handed to pip as a BuildKit secret (default: pip's own
# `cert` setting, PIP_CERT or SSL_CERT_FILE, where set), for TLS-inspecting proxies.
# DOCKER: the client; by default the first of `docker` and /usr/bin/docker that can drive
# BuildKit (buildx, or a pre-23 client with DOCKER_BUILDKIT=1).
set -euo pipefail
cd "$(dirname "$0")/../.."

OPERATOR_IMAGE=${OPERATOR_IMAGE:?set OPERATOR_IMAGE}
INFERENCE_IMAGE=${INFERENCE_IMAGE:?set INFERENCE_IMAGE}
IMAGE_BASES=${IMAGE_BASES:-local}
export DOCKER_BUILDKIT=1

buildkit_client() {
    local candidate version
    for candidate in ${DOCKER:-} docker /usr/bin/docker; do
        command -v "$candidate" >/dev/null || continue
        if "$candidate" buildx version >/dev/null 2>&1; then echo "$candidate"; return 0; fi
        version=$("$candidate" version --format '{{.Client.Version}}' 2>/dev/null || true)
        if [[ $version =~ ^([0-9]+)\. ]] && (( BASH_REMATCH[1] < 23 )); then echo "$candidate"; return 0; fi
    done
    echo "images: no Docker client that drives BuildKit (install the buildx plugin, or set DOCKER)" >&2
    return 1
}
DOCKER=$(buildkit_client)
export DOCKER

# The references a Dockerfile builds on: ARG *_IMAGE defaults and literal FROM images.
bases_of() {
    sed -n -e 's/^ARG [A-Z_]*_IMAGE=\(.*\)$/\1/p' -e 's/^FROM \([^$ ]*:[^ ]*\).*/\1/p' "$1" | tr -d '"' | sort -u
}

ensure_base() {
    local reference=$1
    if "$DOCKER" image inspect "$reference" >/dev/null 2>&1; then
        local standin
        standin=$("$DOCKER" image inspect --format '{{index .Config.Labels "voice-service.stand-in"}}' "$reference")
        echo "images: base $reference${standin:+ (local stand-in: $standin)}"
    elif [[ $IMAGE_BASES == pull ]]; then
        "$DOCKER" pull "$reference"
    else
        scripts/images/standin_base.sh "$reference"
    fi
}

CA_BUNDLE=${IMAGE_CA_BUNDLE-$(pip config get global.cert 2>/dev/null || echo "${PIP_CERT:-${SSL_CERT_FILE:-}}")}
secret_args=()
[[ -n $CA_BUNDLE && -s $CA_BUNDLE ]] && secret_args=(--secret "id=ca-bundle,src=$CA_BUNDLE")

targets=("$@")
(( ${#targets[@]} )) || targets=(operator inference)
rows=()
for target in "${targets[@]}"; do
    case $target in
        operator) tag=$OPERATOR_IMAGE ;;
        inference) tag=$INFERENCE_IMAGE ;;
        *) echo "images: unknown image $target (operator, inference)" >&2; exit 2 ;;
    esac
    dockerfile=Dockerfile.$target
    for base in $(bases_of "$dockerfile"); do ensure_base "$base"; done
    previous=$("$DOCKER" image inspect --format '{{.Id}}' "$tag" 2>/dev/null || true)
    start=$(date +%s%N)
    "$DOCKER" build --progress=plain "${secret_args[@]}" -f "$dockerfile" -t "$tag" .
    elapsed_ms=$(( ($(date +%s%N) - start) / 1000000 ))
    # The build this one replaced, now untagged: removed unless a container or another tag
    # still uses it (then rmi refuses, and it stays).
    if [[ -n $previous && $previous != $("$DOCKER" image inspect --format '{{.Id}}' "$tag") ]]; then
        "$DOCKER" rmi "$previous" >/dev/null 2>&1 && echo "images: removed the previous build of $tag (${previous:7:12})" || true
    fi
    size=$("$DOCKER" image inspect --format '{{.Size}}' "$tag")
    rows+=("$(printf '%-10s %-50s %8d MB %6d.%01d s' "$target" "$tag" $((size / 1000000)) $((elapsed_ms / 1000)) $((elapsed_ms % 1000 / 100)))")
done
printf '\n%-10s %-50s %11s %10s\n' image tag size build
printf '%s\n' "${rows[@]}"
