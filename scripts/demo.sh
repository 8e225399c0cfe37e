#!/usr/bin/env bash
# The demo (README's first command). First the ManagedSecret API: the CRD, the examples validated
# and previewed exactly as the operator will, bad input rejected with the field named. Then the
# real thing: the keyturn-operator binary rotates a PostgreSQL login, an OpenBao KV secret and an
# AWS Secrets Manager secret (moto) inside a Kubernetes API (the in-memory stand-in), and
# e2e/suite/examples/demo.rs proves every rotation from the outside: new login works, old one is
# refused, backends hold what was published, Events, the verified audit chain, a clean shutdown.
#
# It installs what is missing like the test command (Debian postgresql; OpenBao and moto into a
# venv under target/), starts its own throwaway servers on free loopback ports and stops them on
# exit, Ctrl-C included. Logs: target/demo-logs/ (servers, installs, operator.log, audit.db).
#
#   ./scripts/demo.sh                   # about three minutes once built
#   ./scripts/demo.sh --duration 90     # arguments go to the demo (see --help)
set -euo pipefail

# shellcheck source=lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
# shellcheck source=lib/backends.sh
source "${KEYTURN_ROOT}/scripts/lib/backends.sh"

cd "${KEYTURN_ROOT}"
# This run's logs are kept apart from the test command's (target/test-logs/).
KEYTURN_LOG_DIR="${KEYTURN_TARGET}/demo-logs"
# backends_start writes the addresses of the servers it started to KEYTURN_ENV_FILE (by default
# target/test-env.sh, which `./scripts/test.sh --serve` users source). The demo's servers die
# with it, so their addresses go elsewhere and a test session's file stays valid.
KEYTURN_ENV_FILE="${KEYTURN_TARGET}/demo-env.sh"

section() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

# On exit (also Ctrl-C and TERM): stop the demo process group (the demo and its operator) and the
# servers this run started; other runs' servers are left alone.
backends_install_traps

section "Building keyturn-operator, keyturn-apiserver and the demo"
# The demo runs the stand-in in-process; its binary is built so it can be started by hand too.
cargo build --locked --quiet -p keyturn-operator -p keyturn-apiserver -p kubectl-keyturn
cargo build --locked --quiet -p keyturn-e2e --example demo
operator="${CARGO_TARGET_DIR:-target}/debug/keyturn-operator"

section "The CRD (generated from the Rust types; committed as crds/keyturn.dev_managedsecrets.yaml)"
"$operator" crd | grep -E '^  (group|names|scope)|shortNames|    - (ms|msec)$|kind: ManagedSecret' || true
echo "printer columns: $("$operator" crd | grep -E '^      name: ' | sed 's/ *name: //' | paste -sd, -)"

section "Validating and explaining examples/ (simulated clock from 2026-11-22T09:00:00Z)"
"$operator" explain --now 2026-11-22T09:00:00Z --rotations 4 examples/*.yaml

section "Bad input is rejected with the field named (these fixtures are meant to fail)"
# Fixtures the operator's own validation rejects (the schema and CEL layers catch the others
# at kubectl apply; crds/tests/bad_input.rs checks all 61 against all three layers).
for name in schedule-hour-24 time-zone-typo every-overflows postgres-role-sql-drop-role; do
    fixture="crds/fixtures/invalid/${name}.yaml"
    if "$operator" explain --now 2026-11-22T09:00:00Z "$fixture" 2>/dev/null; then
        echo "unexpected: $fixture was accepted" >&2
        exit 1
    fi
done

section "Starting PostgreSQL, OpenBao and moto (AWS Secrets Manager)"
backends_install
backends_start

# The demo in its own process group, in the background: a signal reaches this script at once,
# and the EXIT trap then stops the whole group (cargo, the demo and the operator it started).
rc=0
setsid cargo run --locked --quiet -p keyturn-e2e --example demo -- \
    --logs "${KEYTURN_LOG_DIR}" "$@" </dev/null &
CHILD=$!
wait "${CHILD}" || rc=$?
CHILD=""

backends_stop
info "servers stopped; their logs, the operator's log and audit database: ${KEYTURN_LOG_DIR}/"
if ((rc != 0)); then
    printf '\nThe demo failed (exit %s); see above and %s/operator.log\n' "${rc}" "${KEYTURN_LOG_DIR}" >&2
fi
exit "${rc}"
