#!/usr/bin/env bash
# Builds the binaries of the local Kubernetes control plane used by the e2e tests
# (tests/cluster/launcher.py) from Go modules, into a cache outside the repository:
#
#   ${VOICE_CLUSTER_CACHE:-~/.cache/voice-service}/k8s-<kubernetes version>/bin/
#
# kube-apiserver, kube-controller-manager, kube-scheduler, kubectl and the real test node's
# kubelet and kube-proxy come from the wrapper module tests/cluster/gomod/kubernetes, etcd
# from tests/cluster/gomod/etcd, kwok and helm from `go install`. A binary is rebuilt only when its version stamp
# (bin/.<name>.version) differs from the pinned version, so a warm run does nothing.
#
# Usage: scripts/build-cluster-tools.sh [--print-bin-dir]
# Called by `make cluster-tools` (mk/cluster.mk) and by the pytest fixture when a
# binary is missing. Environment: GO (default go), GO_BUILD_PARALLELISM (default 2).
set -euo pipefail

# Pinned versions of the tools that are not wrapper modules. The Kubernetes and etcd
# versions are read from the wrapper modules' go.mod so they are written down once.
KWOK_VERSION="v0.8.0"
HELM_MODULE="helm.sh/helm/v3"
HELM_VERSION="v3.21.4"

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
K8S_MOD_DIR="${REPO_ROOT}/tests/cluster/gomod/kubernetes"
ETCD_MOD_DIR="${REPO_ROOT}/tests/cluster/gomod/etcd"
GO="${GO:-go}"
PARALLELISM="${GO_BUILD_PARALLELISM:-2}"

# Module versions come straight from the go.mod files (no network needed to read them).
module_version() { # <go.mod dir> <module path>
    awk -v m="$2" '$1 == "require" && $2 == m { print $3; exit }
                   $1 == m && $2 ~ /^v/ { print $2; exit }' "$1/go.mod"
}
K8S_VERSION="$(module_version "${K8S_MOD_DIR}" k8s.io/kubernetes)"
ETCD_VERSION="$(module_version "${ETCD_MOD_DIR}" go.etcd.io/etcd/server/v3)"
if [[ -z "${K8S_VERSION}" || -z "${ETCD_VERSION}" ]]; then
    echo "build-cluster-tools: cannot read pinned versions from the wrapper go.mod files" >&2
    exit 1
fi

CACHE_ROOT="${VOICE_CLUSTER_CACHE:-${XDG_CACHE_HOME:-${HOME}/.cache}/voice-service}"
BIN_DIR="${CACHE_ROOT}/k8s-${K8S_VERSION}/bin"

if [[ "${1:-}" == "--print-bin-dir" ]]; then
    echo "${BIN_DIR}"
    exit 0
fi

mkdir -p "${BIN_DIR}"
export CGO_ENABLED=0
# Keep the module graph exactly as committed; never let a build edit go.mod.
export GOFLAGS="-mod=readonly ${GOFLAGS:-}"

is_built() { # <name> <version>
    [[ -x "${BIN_DIR}/$1" && "$(cat "${BIN_DIR}/.$1.version" 2>/dev/null)" == "$2" ]]
}

mark_built() { # <name> <version>
    echo "$2" > "${BIN_DIR}/.$1.version"
}

# Runs one build step with a progress line and its duration; the binary is built into
# a temporary name first so an interrupted build never leaves a half-written binary.
build() { # <name> <version> <command...>
    local name="$1" version="$2"
    shift 2
    if is_built "${name}" "${version}"; then
        echo "build-cluster-tools: ${name} ${version} already built"
        return
    fi
    echo "build-cluster-tools: building ${name} ${version} ..."
    local start=${SECONDS}
    "$@"
    mark_built "${name}" "${version}"
    echo "build-cluster-tools: built ${name} ${version} in $((SECONDS - start))s"
}

# Kubernetes components print this version (`--version`, /version); without the
# stamps they report v0.0.0-master and kubectl warns about version skew.
k8s_minor="${K8S_VERSION#v1.}"
k8s_minor="${k8s_minor%%.*}"
k8s_ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    k8s_ldflags+=" -X ${pkg}.gitVersion=${K8S_VERSION}"
    k8s_ldflags+=" -X ${pkg}.gitMajor=1 -X ${pkg}.gitMinor=${k8s_minor}"
    k8s_ldflags+=" -X ${pkg}.gitTreeState=clean"
done

build_k8s() { # <name>
    (cd "${K8S_MOD_DIR}" && "${GO}" build -p "${PARALLELISM}" -trimpath \
        -ldflags "${k8s_ldflags}" -o "${BIN_DIR}/.$1.tmp" "k8s.io/kubernetes/cmd/$1")
    mv -f "${BIN_DIR}/.$1.tmp" "${BIN_DIR}/$1"
}

build_etcd() {
    (cd "${ETCD_MOD_DIR}" && "${GO}" build -p "${PARALLELISM}" -trimpath \
        -ldflags "-s -w" -o "${BIN_DIR}/.etcd.tmp" .)
    mv -f "${BIN_DIR}/.etcd.tmp" "${BIN_DIR}/etcd"
}

# kwok and helm carry no replace directives, so plain `go install module@version` works;
# GOFLAGS=-mod=readonly would not apply outside a module, so it is dropped here.
go_install() { # <name> <package@version> [ldflags]
    local tmp_gobin
    tmp_gobin="$(mktemp -d "${BIN_DIR}/.gobin.XXXXXX")"
    GOFLAGS="" GOBIN="${tmp_gobin}" "${GO}" install -p "${PARALLELISM}" -trimpath \
        -ldflags "-s -w ${3:-}" "$2"
    mv -f "${tmp_gobin}/$1" "${BIN_DIR}/$1"
    rmdir "${tmp_gobin}"
}

echo "build-cluster-tools: Kubernetes ${K8S_VERSION}, etcd ${ETCD_VERSION}, kwok ${KWOK_VERSION}, helm ${HELM_VERSION}"
echo "build-cluster-tools: into ${BIN_DIR} (go build -p ${PARALLELISM}; a cold build takes a while)"
total_start=${SECONDS}
# etcd first: it is the smallest, and the launcher cannot start without it.
build etcd "${ETCD_VERSION}" build_etcd
build kube-apiserver "${K8S_VERSION}" build_k8s kube-apiserver
build kube-controller-manager "${K8S_VERSION}" build_k8s kube-controller-manager
build kube-scheduler "${K8S_VERSION}" build_k8s kube-scheduler
build kubectl "${K8S_VERSION}" build_k8s kubectl
build kwok "${KWOK_VERSION}" go_install kwok "sigs.k8s.io/kwok/cmd/kwok@${KWOK_VERSION}" \
    "-X sigs.k8s.io/kwok/pkg/consts.Version=${KWOK_VERSION}"
build helm "${HELM_VERSION}" go_install helm "${HELM_MODULE}/cmd/helm@${HELM_VERSION}" \
    "-X ${HELM_MODULE}/internal/version.version=${HELM_VERSION}"
# The real test node (tests/cluster/node.py): same module, so it shares the build cache.
build kubelet "${K8S_VERSION}" build_k8s kubelet
build kube-proxy "${K8S_VERSION}" build_k8s kube-proxy
echo "build-cluster-tools: all tools ready in ${BIN_DIR} ($((SECONDS - total_start))s)"
