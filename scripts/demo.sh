#!/usr/bin/env bash
# The demo (README's first command). What it shows today, plainly: the ManagedSecret API and the
# rotation lifecycle. It validates the examples exactly as the operator will, shows how bad input
# is rejected with the field named, and previews each example's next rotations by driving the
# real lifecycle core with a simulated clock. It contacts no cluster and no backend: the
# controller that runs the rotators in a cluster is not built yet (see README).
set -euo pipefail
cd "$(dirname "$0")/.."

section() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

section "Building keyturn-operator"
cargo build --locked --quiet -p keyturn-operator
operator=target/debug/keyturn-operator

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

section "Not shown yet"
cat <<'TEXT'
The rotators exist and are proven against real PostgreSQL, OpenBao and moto servers by the test
command (./scripts/test.sh), but the controller that runs them inside a Kubernetes cluster, the
consumer restarts and the audit log are not built yet, so nothing here rotates in a cluster.
TEXT
