#!/usr/bin/env bash
# The e2e suite against a real Kubernetes API server, on machines with Docker: creates a kind
# cluster (keyturn-e2e), installs the ManagedSecret CRD, starts the backends the way
# scripts/test.sh does, runs `cargo nextest run -p keyturn-e2e -p kubectl-keyturn` with E2E_KUBECONFIG set, and
# deletes the cluster and stops the backends at exit. Then, when helm is installed, it follows the
# quick start (docs/quick-start.md) on a second kind cluster (keyturn): the page's commands marked
# `kind = true` in docs/commands.toml, in page order, exactly as shown (the image built with
# docker, installed with the chart, a ManagedSecret rotating against an in-cluster PostgreSQL).
#
#   e2e/kind.sh                      # the whole suite
#   e2e/kind.sh -E 'test(harness)'   # extra arguments go to `cargo nextest run`
#
# Environment: KIND_NODE_IMAGE (a kindest/node image; default: kind's own),
# KEYTURN_KIND_KEEP=1 (keep the cluster at exit, to look around; delete it with
# `kind delete cluster --name keyturn-e2e`).
set -euo pipefail

# shellcheck source=../scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib/common.sh"
# shellcheck source=../scripts/lib/backends.sh
source "${KEYTURN_ROOT}/scripts/lib/backends.sh"

cd "${KEYTURN_ROOT}"

CLUSTER_NAME="keyturn-e2e"
KIND_KUBECONFIG="${KEYTURN_TARGET}/kind-e2e.kubeconfig"
CRD_FILE="${KEYTURN_ROOT}/crds/keyturn.dev_managedsecrets.yaml"
CLUSTER_CREATED=0
# The quick start's own cluster and the files its commands write in the working directory.
QUICK_START_CLUSTER="keyturn"
QUICK_START_KUBECONFIG="${KEYTURN_TARGET}/kind-quick-start.kubeconfig"
QUICK_START_FILES=(pg-admin.password audit.csv)
QUICK_START_CREATED=0

# Everything missing at once, so one read of the message is enough to fix the machine.
check_tools() {
    local missing=()
    command -v docker >/dev/null 2>&1 || missing+=("docker (https://docs.docker.com/engine/install/)")
    command -v kind >/dev/null 2>&1 || missing+=("kind (https://kind.sigs.k8s.io/docs/user/quick-start/#installation)")
    command -v kubectl >/dev/null 2>&1 || missing+=("kubectl (https://kubernetes.io/docs/tasks/tools/)")
    command -v cargo >/dev/null 2>&1 || missing+=("cargo (https://rustup.rs)")
    if command -v cargo >/dev/null 2>&1 && ! cargo nextest --version >/dev/null 2>&1; then
        missing+=("cargo-nextest (cargo install --locked cargo-nextest)")
    fi
    if ((${#missing[@]})); then
        printf 'error: e2e/kind.sh needs tools that are not installed:\n' >&2
        printf '  - %s\n' "${missing[@]}" >&2
        exit 1
    fi
    # The CLI alone is not enough: kind needs a running engine it may use.
    docker info >/dev/null 2>&1 ||
        die "docker is installed but its daemon does not answer (is it running, and may this user use it?)"
}

delete_cluster() {
    if ((CLUSTER_CREATED)); then
        if [[ "${KEYTURN_KIND_KEEP:-0}" == 1 ]]; then
            info "keeping kind cluster ${CLUSTER_NAME} (KEYTURN_KIND_KEEP=1); kubeconfig: ${KIND_KUBECONFIG}"
        else
            info "deleting kind cluster ${CLUSTER_NAME}"
            kind delete cluster --name "${CLUSTER_NAME}" >/dev/null 2>&1 ||
                warn "could not delete kind cluster ${CLUSTER_NAME}; run: kind delete cluster --name ${CLUSTER_NAME}"
            rm -f "${KIND_KUBECONFIG}"
        fi
        CLUSTER_CREATED=0
# The quick start's own cluster and the files its commands write in the working directory.
QUICK_START_CLUSTER="keyturn"
QUICK_START_KUBECONFIG="${KEYTURN_TARGET}/kind-quick-start.kubeconfig"
QUICK_START_FILES=(pg-admin.password audit.csv)
QUICK_START_CREATED=0
    fi
}

delete_quick_start() {
    if ((QUICK_START_CREATED)); then
        kind delete cluster --name "${QUICK_START_CLUSTER}" >/dev/null 2>&1 || true
        rm -f "${QUICK_START_KUBECONFIG}" "${QUICK_START_FILES[@]/#/${KEYTURN_ROOT}/}"
        QUICK_START_CREATED=0
    fi
}

# The quick start's commands, as the page shows them, one shell each, in the repository root
# with the binaries just built on PATH (so `kubectl keyturn` finds the plugin instead of
# `cargo install`, which the list leaves out).
run_quick_start() {
    local commands=() command
    mapfile -t commands < <("${KEYTURN_VENV}/bin/python" docs/tests/doccheck.py commands docs/quick-start.md)
    ((${#commands[@]})) || die "docs/commands.toml marks no command of docs/quick-start.md kind = true"
    QUICK_START_CREATED=1
    for command in "${commands[@]}"; do
        printf '$ %s\n' "${command}" >&2
        KUBECONFIG="${QUICK_START_KUBECONFIG}" \
            PATH="${CARGO_TARGET_DIR:-${KEYTURN_TARGET}}/debug:${KEYTURN_VENV}/bin:${PATH}" \
            bash -o pipefail -c "${command}" </dev/null
    done
}

# On exit: stops the running command, the backends and the cluster, prints the phase summary and
# exits with the script's status. INT and TERM exit with 130 and 143 through it.
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [[ -n "${CHILD}" ]]; then
        kill -TERM -- "-${CHILD}" 2>/dev/null || true
        wait "${CHILD}" 2>/dev/null || true
        CHILD=""
    fi
    backends_stop
    delete_cluster
    delete_quick_start
    case "${rc}" in
    0) phase_summary ok ;;
    130 | 143) phase_summary interrupted ;;
    *) phase_summary "FAILED (exit ${rc})" ;;
    esac
    exit "${rc}"
}
trap cleanup EXIT
trap 'printf "\ninterrupted\n" >&2; exit 130' INT
trap 'printf "\nterminated\n" >&2; exit 143' TERM

# run_child CMD...: runs CMD in its own process group, in the background, so that a signal to
# this script is handled at once and stops CMD too (through cleanup).
run_child() {
    local rc=0
    printf '$ %s\n' "$*" >&2
    setsid "$@" </dev/null &
    CHILD=$!
    wait "${CHILD}" || rc=$?
    CHILD=""
    return "${rc}"
}

phase "Check tools"
check_tools

phase "Create kind cluster ${CLUSTER_NAME}"
if kind get clusters 2>/dev/null | grep -qx "${CLUSTER_NAME}"; then
    # Left behind by a run that was killed (or kept): start from a clean cluster.
    info "deleting the existing cluster ${CLUSTER_NAME} first"
    kind delete cluster --name "${CLUSTER_NAME}"
fi
mkdir -p "${KEYTURN_TARGET}"
CREATE_ARGS=(--name "${CLUSTER_NAME}" --kubeconfig "${KIND_KUBECONFIG}" --wait 180s)
if [[ -n "${KIND_NODE_IMAGE:-}" ]]; then
    CREATE_ARGS+=(--image "${KIND_NODE_IMAGE}")
fi
CLUSTER_CREATED=1
run_child kind create cluster "${CREATE_ARGS[@]}"

phase "Install the ManagedSecret CRD"
run_child kubectl --kubeconfig "${KIND_KUBECONFIG}" apply --server-side -f "${CRD_FILE}"
run_child kubectl --kubeconfig "${KIND_KUBECONFIG}" wait --for condition=established \
    --timeout 60s crd/managedsecrets.keyturn.dev
export E2E_KUBECONFIG="${KIND_KUBECONFIG}"

phase "Install test tools"
backends_install

phase "Start backends"
backends_start
info "environment written to target/test-env.sh"

phase "cargo build (binaries)"
run_child cargo build --workspace --bins --locked

phase "cargo nextest (keyturn-e2e and the kubectl plugin against kind)"
run_child cargo nextest run -p keyturn-e2e -p kubectl-keyturn --locked --no-fail-fast "$@"

phase "Quick start (docs/quick-start.md) on kind cluster ${QUICK_START_CLUSTER}"
if ! command -v helm >/dev/null 2>&1; then
    warn "helm is not installed: the quick start was not run (https://helm.sh/docs/intro/install/)"
elif kind get clusters 2>/dev/null | grep -qx "${QUICK_START_CLUSTER}"; then
    # The page creates and deletes a cluster with this name: never touch one that was there.
    warn "a kind cluster named ${QUICK_START_CLUSTER} exists already: the quick start was not run"
else
    run_quick_start
    delete_quick_start
fi
phase_end
