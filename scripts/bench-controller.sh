#!/usr/bin/env bash
# The controller benchmark: starts the backends (PostgreSQL, OpenBao, moto) on free loopback
# ports, builds the operator, and runs e2e/suite/benches/controller.rs, which drives the real
# keyturn-operator binary against the in-process Kubernetes API stand-in. It prints rotations/s
# for a batch due at once, start latency, duplicates, API writes per rotation, operator RSS per
# 1,000 ManagedSecrets, and API requests while idle. Measures; never fails on a timing.
#
#   ./scripts/bench-controller.sh                      # 200 rotations, 1k and 10k objects
#   KEYTURN_BENCH_ROTATIONS=50 KEYTURN_BENCH_OBJECTS=2000 ./scripts/bench-controller.sh
#
# Variables: KEYTURN_BENCH_ROTATIONS (200), KEYTURN_BENCH_CONCURRENCY (8),
# KEYTURN_BENCH_OBJECTS (10000), KEYTURN_BENCH_UNRELATED (2000 unrelated Secrets).
# KEYTURN_BENCH_PROFILE=release runs a release build of the operator binary (only the binary is
# built in release; the benchmark driver and the API stand-in stay debug). Default: the debug
# build the tests use. docs/performance.md says which build each figure comes from.
set -euo pipefail

# shellcheck source=lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
# shellcheck source=lib/backends.sh
source "${KEYTURN_ROOT}/scripts/lib/backends.sh"

cd "${KEYTURN_ROOT}"
backends_install_traps
backends_install
backends_start
if [[ "${KEYTURN_BENCH_PROFILE:-debug}" == release ]]; then
    cargo build --locked -q --release -p keyturn-operator
    export KEYTURN_OPERATOR_BIN="${CARGO_TARGET_DIR:-${KEYTURN_TARGET}}/release/keyturn-operator"
else
    cargo build --locked -q -p keyturn-operator
fi
cargo bench --locked -q --profile dev -p keyturn-e2e --bench controller
