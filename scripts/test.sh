#!/usr/bin/env bash
# The test command: installs what is missing, starts the real backends (PostgreSQL, OpenBao,
# moto) on free loopback ports, runs fmt, clippy, the build, the Helm chart tests, the docs checks,
# nextest and doc tests, and always stops the backends again.
#
#   ./scripts/test.sh                       # everything
#   ./scripts/test.sh -p keyturn-testenv    # extra arguments go to `cargo nextest run`
#   ./scripts/test.sh --serve               # only start the backends and wait for Ctrl-C;
#                                           # then, elsewhere: source target/test-env.sh
#
# Logs of installs and servers: target/test-logs/. Exit code: non-zero when any phase failed.
set -euo pipefail

# shellcheck source=lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
# shellcheck source=lib/backends.sh
source "${KEYTURN_ROOT}/scripts/lib/backends.sh"

cd "${KEYTURN_ROOT}"

SERVE=0
if [[ "${1:-}" == "--serve" ]]; then
    SERVE=1
    shift
fi

# Phases that failed; on exit the traps stop the running phase and the backends.
FAILED=()
backends_install_traps

# run_phase NAME CMD...: runs CMD in its own process group and in the background, so that a
# signal to this script is handled at once rather than after CMD finishes.
run_phase() {
    local name="$1" rc=0
    shift
    phase "${name}"
    printf '$ %s\n' "$*" >&2
    setsid "$@" </dev/null &
    CHILD=$!
    wait "${CHILD}" || rc=$?
    CHILD=""
    if ((rc == 0)); then
        phase_end ok
    else
        phase_end "FAILED (exit ${rc})"
        FAILED+=("${name}")
    fi
}

phase "Install test tools"
backends_install

phase "Start backends"
backends_start
info "environment written to target/test-env.sh"

if ((SERVE)); then
    phase_end
    printf '\nBackends are running. In another shell:\n    source %s\nPress Ctrl-C to stop them.\n' \
        "${KEYTURN_ENV_FILE}" >&2
    # Short sleeps waited for in the background: a signal is handled within a moment, and a
    # killed run leaves nothing behind that outlives it by more than a second.
    while true; do
        sleep 1 &
        wait $! || true
    done
fi

run_phase "cargo fmt" cargo fmt --all -- --check
run_phase "cargo clippy" cargo clippy --workspace --all-targets --locked -- -D warnings
# --workspace would override a package selection passed by the caller (-p NAME): drop it then.
SCOPE=(--workspace)
for arg in "$@"; do
    case "${arg}" in
    -p | -p* | --package | --package=*) SCOPE=() ;;
    esac
done
# The e2e suite (keyturn-e2e) runs the real keyturn-operator binary, which nextest does not build
# (it builds test targets only): build every binary first, with the same profile.
run_phase "cargo build (binaries)" cargo build --workspace --bins --locked
# The Helm chart: lint and render with real Helm, every manifest validated, and the rendered
# operator settings fed to the binary just built (helm/tests, a few seconds).
run_phase "helm chart tests" env KEYTURN_OPERATOR_BIN="${KEYTURN_OPERATOR_BIN:-${CARGO_TARGET_DIR:-${KEYTURN_TARGET}}/debug/keyturn-operator}" \
    "${KEYTURN_VENV}/bin/python" -m pytest helm/tests -q -p no:cacheprovider
# The docs: every command in README.md and docs/ accounted for in docs/commands.toml, the safe ones
# run (against the Kubernetes API stand-in where they need an API), every relative link resolved
# (docs/tests, a few seconds). Needs the binaries just built, so it fails rather than skips.
run_phase "docs checks" env KEYTURN_BIN_DIR="${CARGO_TARGET_DIR:-${KEYTURN_TARGET}}/debug" \
    KEYTURN_VENV="${KEYTURN_VENV}" KEYTURN_DOCS_REQUIRE_BINARIES=1 \
    "${KEYTURN_VENV}/bin/python" -m pytest docs/tests -q -p no:cacheprovider
run_phase "cargo nextest" cargo nextest run "${SCOPE[@]}" --locked --no-fail-fast "$@"
run_phase "doc tests" cargo test --workspace --doc --locked

if ((${#FAILED[@]})); then
    printf '\nFAILED:' >&2
    printf ' [%s]' "${FAILED[@]}" >&2
    printf '\n' >&2
    exit 1
fi
printf '\nAll phases passed.\n' >&2
