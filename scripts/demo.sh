#!/usr/bin/env bash
# The demo (README's first command). What it shows, plainly: the ManagedSecret API, the rotation
# lifecycle and real rotations of a PostgreSQL login role. It validates the examples exactly as
# the operator will, shows how bad input is rejected with the field named, previews each
# example's next rotations by driving the real lifecycle core with a simulated clock, and then
# rotates a role for real: the lifecycle core on the real clock decides, the real PostgresRotator
# acts against a throwaway PostgreSQL started here (only that server, on a free loopback port,
# in this run's own state directory; stopped on exit). It contacts no cluster: the controller
# that runs the rotators in a cluster is not built yet (see README).
set -euo pipefail

# shellcheck source=lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
# shellcheck source=lib/backends.sh
source "${KEYTURN_ROOT}/scripts/lib/backends.sh"

cd "${KEYTURN_ROOT}"
# This run's server logs are kept apart from the test command's (target/test-logs/).
KEYTURN_LOG_DIR="${KEYTURN_TARGET}/demo-logs"

section() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

# Stops only the PostgreSQL this run started (recorded in its own state directory).
trap backends_stop EXIT
trap 'printf "\ninterrupted\n" >&2; exit 130' INT
trap 'printf "\nterminated\n" >&2; exit 143' TERM

section "Building keyturn-operator and the PostgreSQL demo driver"
cargo build --locked --quiet -p keyturn-operator
cargo build --locked --quiet -p keyturn-rotators --example demo_postgres
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

section "Real rotations against a real PostgreSQL"
# PostgreSQL only, with the test command's helpers: installed with apt when missing (as root),
# then started the way backends_start does it, in this run's own state directory (so stale-run
# cleanup recognises it) and on a free port; other runs' servers are left alone.
mkdir -p "${KEYTURN_LOG_DIR}"
install_postgres
backends_start_postgres
# Three rotations, 10 s apart, each password valid 2 minutes: about twenty seconds.
cargo run --locked --quiet -p keyturn-rotators --example demo_postgres -- \
    --url "${KEYTURN_TEST_POSTGRES_URL}" --rotations 3 --every 10s --ttl 2m
backends_stop
info "PostgreSQL stopped (its log: ${KEYTURN_LOG_DIR}/postgres.log)"

section "Not shown yet"
cat <<'TEXT'
The rotations above ran on this machine, driven by a local loop: the controller that runs the
same lifecycle inside a Kubernetes cluster (staging Secret, the consumers' Secret, status), the
consumer restarts and the audit log are not built yet, so nothing here rotates in a cluster. The
Vault/OpenBao and AWS Secrets Manager rotators are proven against real OpenBao and moto servers
by the test command (./scripts/test.sh).
TEXT
