#!/usr/bin/env bash
# The PostgreSQL rotation benchmark: starts a throwaway PostgreSQL (only that backend) on a free
# loopback port, builds and runs rotators/benches/postgres_rotations.rs in release (the real
# PostgresRotator, SingleUser and AlternatingUsers), runs pgbench on the same SQL work for
# comparison, prints a summary table and always stops its server again. Measures and reports;
# it never fails because of a timing. See docs/performance.md.
set -euo pipefail

# shellcheck source=lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
# shellcheck source=lib/backends.sh
source "${KEYTURN_ROOT}/scripts/lib/backends.sh"

cd "${KEYTURN_ROOT}"

usage() {
    cat <<EOF
Usage: ./scripts/bench.sh [OPTIONS]

Rotates R PostgreSQL credentials with keyturn's PostgresRotator, C at a time (SingleUser, then
AlternatingUsers), then measures the same SQL work with pgbench on the same server:
  admin:  pgbench -n -C -c C -j 2 -f alter.sql    (new SCRAM login as the admin + ALTER ROLE
                                                   ... PASSWORD '<precomputed SCRAM verifier>',
                                                   on a random role of the client's own)
  login:  pgbench -n -C -c C -j 2 -f select.sql   (new SCRAM login as a role + SELECT current_user)
and composes the two rates serially: pgbench rotations/s = 1 / (1/admin + 1/login)
(AlternatingUsers does two ALTERs, the retire being the second: 1 / (2/admin + 1/login)).

Options:
  -r, --roles R           roles (= rotations per strategy)     [env KEYTURN_BENCH_ROLES, default 200]
  -c, --concurrency C     rotations / pgbench clients in flight [env KEYTURN_BENCH_CONCURRENCY, default 8]
  -t, --transactions N    transactions per pgbench run, total   [env KEYTURN_BENCH_PGBENCH_TRANSACTIONS, default R]
  -h, --help              this text

Needs: cargo; PostgreSQL (installed with apt as root when missing, like scripts/test.sh).
Cargo builds into \$CARGO_TARGET_DIR (default: target/). Logs: target/test-logs/.
The server is this run's own and is stopped on exit; other runs' servers are never touched.
EOF
}

ROLES="${KEYTURN_BENCH_ROLES:-200}"
CONCURRENCY="${KEYTURN_BENCH_CONCURRENCY:-8}"
TRANSACTIONS="${KEYTURN_BENCH_PGBENCH_TRANSACTIONS:-}"
while (($#)); do
    case "$1" in
    -h | --help)
        usage
        exit 0
        ;;
    -r | --roles)
        ROLES="${2:?$1 needs a value}"
        shift
        ;;
    -c | --concurrency)
        CONCURRENCY="${2:?$1 needs a value}"
        shift
        ;;
    -t | --transactions)
        TRANSACTIONS="${2:?$1 needs a value}"
        shift
        ;;
    --roles=*) ROLES="${1#*=}" ;;
    --concurrency=*) CONCURRENCY="${1#*=}" ;;
    --transactions=*) TRANSACTIONS="${1#*=}" ;;
    *)
        usage >&2
        die "unknown argument: $1"
        ;;
    esac
    shift
done
TRANSACTIONS="${TRANSACTIONS:-${ROLES}}"
for value in "${ROLES}" "${CONCURRENCY}" "${TRANSACTIONS}"; do
    [[ "${value}" =~ ^[1-9][0-9]*$ ]] || die "not a positive number: ${value}"
done
# pgbench counts transactions per client.
PER_CLIENT=$(((TRANSACTIONS + CONCURRENCY - 1) / CONCURRENCY))
JOBS=$((CONCURRENCY < 2 ? CONCURRENCY : 2))

# On exit, stop the running measurement and only the server recorded in this run's state
# directory.
backends_install_traps

# run_child OUT CMD...: runs CMD in its own session in the background (so a signal to this
# script is handled at once), showing its output and keeping a copy in OUT.
run_child() {
    local out="$1" rc=0
    shift
    printf '$ %s\n' "$*" >&2
    # shellcheck disable=SC2016 # expanded by the inner bash
    setsid bash -c 'set -o pipefail; "$@" 2>&1 | tee "$0"' "${out}" "$@" </dev/null &
    CHILD=$!
    wait "${CHILD}" || rc=$?
    CHILD=""
    return "${rc}"
}

# CPU time (clock ticks) of PID and of its children it has reaped.
cpu_ticks() {
    sed -e 's/^.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 + $14 + $15 }'
}
declare -A CLIENT_CPU_MS=() SERVER_CPU_MS=()
# measured NAME OUT CMD...: run_child, recording the CPU time of CMD (client: this script's
# reaped children) and of the server's backends (reaped by the postmaster; one per connection)
# in milliseconds.
measured() {
    local name="$1" out="$2" client server rc=0 hz
    shift 2
    hz="$(getconf CLK_TCK)"
    client="$(cpu_ticks $$)"
    server="$(cpu_ticks "${POSTMASTER}")"
    run_child "${out}" "$@" || rc=$?
    CLIENT_CPU_MS["${name}"]=$((($(cpu_ticks $$) - client) * 1000 / hz))
    SERVER_CPU_MS["${name}"]=$((($(cpu_ticks "${POSTMASTER}") - server) * 1000 / hz))
    return "${rc}"
}

phase "Install PostgreSQL"
mkdir -p "${KEYTURN_LOG_DIR}"
install_postgres
PGBENCH="${PG_BIN}/pgbench"
if [[ ! -x "${PGBENCH}" ]]; then
    # Debian ships pgbench with the server (postgresql-NN); older layouts had it in -contrib.
    _apt_install postgresql-contrib
    [[ -x "${PGBENCH}" ]] || PGBENCH="$(command -v pgbench || true)"
    [[ -n "${PGBENCH}" && -x "${PGBENCH}" ]] || die "pgbench not found after installing postgresql-contrib"
fi
PSQL="${PG_BIN}/psql"
info "pgbench: $("${PGBENCH}" --version)"

phase "Start PostgreSQL"
backends_start_postgres

# postgres://USER:PASSWORD@HOST:PORT/DATABASE, as start_postgres writes it.
[[ "${KEYTURN_TEST_POSTGRES_URL}" =~ ^postgres://([^:]+):([^@]+)@([^:/]+):([0-9]+)/(.+)$ ]] ||
    die "unexpected KEYTURN_TEST_POSTGRES_URL format"
export PGUSER="${BASH_REMATCH[1]}" PGPASSWORD="${BASH_REMATCH[2]}" PGHOST="${BASH_REMATCH[3]}"
export PGPORT="${BASH_REMATCH[4]}" PGDATABASE="${BASH_REMATCH[5]}" PGSSLMODE=disable
export PGAPPNAME=keyturn-bench PGCONNECT_TIMEOUT=10
ADMIN_PASSWORD="${PGPASSWORD}"
POSTMASTER="$(head -n1 "$(cat "${KEYTURN_STATE}/pgdir")/data/postmaster.pid")"
PG_VERSION="$("${PSQL}" -X -At -c 'SHOW server_version')"

phase "Build (release)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${KEYTURN_TARGET}}"
run_child "${KEYTURN_STATE}/build.log" \
    cargo bench --locked -p keyturn-rotators --bench postgres_rotations --no-run
# The binary itself is run below, so that its CPU time is not mixed with cargo's.
BENCH_BIN="$(cargo bench --locked -p keyturn-rotators --bench postgres_rotations --no-run \
    --message-format=json 2>/dev/null | sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -n1)"
[[ -x "${BENCH_BIN}" ]] || die "cannot find the built postgres_rotations benchmark"

LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"

phase "keyturn PostgresRotator"
# One strategy per process, for separate CPU figures. Role setup and teardown (CREATE/DROP ROLE,
# GRANT) fall inside the measured CPU; they are small beside the rotations.
measured single "${KEYTURN_STATE}/keyturn-single.out" \
    "${BENCH_BIN}" --roles "${ROLES}" --concurrency "${CONCURRENCY}" --strategy single
measured alternating "${KEYTURN_STATE}/keyturn-alternating.out" \
    "${BENCH_BIN}" --roles "${ROLES}" --concurrency "${CONCURRENCY}" --strategy alternating
cat "${KEYTURN_STATE}"/keyturn-*.out >"${KEYTURN_STATE}/keyturn.out"

phase "pgbench"
# R roles for the ALTERs and one login role, with a password whose SCRAM verifier PostgreSQL
# computes itself (the same format keyturn computes client-side); every ALTER sets that
# verifier, so the login role's password stays valid whatever the ALTERs did.
LOGIN_PASSWORD="$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
VALID_UNTIL="$(date -u -d '+30 days' +%Y-%m-%dT%H:%M:%SZ)"
"${PSQL}" -X -q -v ON_ERROR_STOP=1 >/dev/null <<EOF
SET password_encryption = 'scram-sha-256';
CREATE ROLE ktpgb_login LOGIN PASSWORD '${LOGIN_PASSWORD}';
DO \$\$ BEGIN
  FOR i IN 0..${ROLES} - 1 LOOP
    EXECUTE format('CREATE ROLE %I LOGIN', 'ktpgb_' || i);
  END LOOP;
END \$\$;
EOF
VERIFIER="$("${PSQL}" -X -At -c "SELECT rolpassword FROM pg_authid WHERE rolname = 'ktpgb_login'")"
[[ "${VERIFIER}" == SCRAM-SHA-256\$4096:* ]] || die "unexpected verifier format from PostgreSQL"
# The variable has a long name: pgbench substitutes :name anywhere, also inside the verifier.
# Each client alters only roles of its own (client_id + C * k): two concurrent ALTERs of one
# role fail with "tuple concurrently updated", which keyturn never does (one rotation per role).
SLOTS_PER_CLIENT=$((ROLES / CONCURRENCY))
((SLOTS_PER_CLIENT >= 1)) || die "--roles (${ROLES}) must be at least --concurrency (${CONCURRENCY})"
cat >"${KEYTURN_STATE}/alter.sql" <<EOF
\set ktbenchrole :client_id + ${CONCURRENCY} * random(0, ${SLOTS_PER_CLIENT} - 1)
ALTER ROLE ktpgb_:ktbenchrole WITH LOGIN PASSWORD '${VERIFIER}' VALID UNTIL '${VALID_UNTIL}';
EOF
printf 'SELECT current_user;\n' >"${KEYTURN_STATE}/select.sql"

PGBENCH_ARGS=(-n -C -c "${CONCURRENCY}" -j "${JOBS}" -t "${PER_CLIENT}")
measured admin "${KEYTURN_STATE}/pgbench-admin.out" \
    "${PGBENCH}" "${PGBENCH_ARGS[@]}" -f "${KEYTURN_STATE}/alter.sql"
altered="$("${PSQL}" -X -At -c "SELECT count(*) FROM pg_authid WHERE rolname LIKE 'ktpgb\_%' AND rolname <> 'ktpgb_login' AND rolpassword = '${VERIFIER}'")"
((altered > 0)) || die "pgbench's ALTER ROLE did not set the verifier (pgbench variable substitution?)"
info "pgbench set the verifier on ${altered} of ${ROLES} roles"
PGPASSWORD="${LOGIN_PASSWORD}"
measured login "${KEYTURN_STATE}/pgbench-login.out" \
    "${PGBENCH}" "${PGBENCH_ARGS[@]}" -U ktpgb_login -f "${KEYTURN_STATE}/select.sql"
PGPASSWORD="${ADMIN_PASSWORD}"
"${PSQL}" -X -q -v ON_ERROR_STOP=1 >/dev/null <<EOF
DO \$\$ BEGIN
  FOR i IN 0..${ROLES} - 1 LOOP
    EXECUTE format('DROP ROLE %I', 'ktpgb_' || i);
  END LOOP;
END \$\$;
DROP ROLE ktpgb_login;
EOF

LOAD_AFTER="$(cut -d' ' -f1-3 /proc/loadavg)"
phase_end

# ---------------------------------------------------------------------------------------------
# Summary

# field FILE STRATEGY KEY: a value from the bench's "RESULT strategy=... key=value" line.
field() {
    grep "^RESULT strategy=$2 " "$1" | tr ' ' '\n' | sed -n "s/^$3=//p"
}
# pgbench_tps FILE: the tps pgbench reports (with -C: including the reconnections).
pgbench_tps() {
    sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$1" | head -n1
}
pgbench_latency() {
    sed -n 's/^latency average = \([0-9.]*\) ms.*/\1/p' "$1" | head -n1
}
pgbench_failed() {
    sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' "$1" | head -n1
}

OURS="${KEYTURN_STATE}/keyturn.out"
ADMIN_TPS="$(pgbench_tps "${KEYTURN_STATE}/pgbench-admin.out")"
LOGIN_TPS="$(pgbench_tps "${KEYTURN_STATE}/pgbench-login.out")"
[[ -n "${ADMIN_TPS}" && -n "${LOGIN_TPS}" ]] || die "could not read pgbench's tps"
read -r PGB_SINGLE PGB_ALTERNATING < <(awk -v a="${ADMIN_TPS}" -v b="${LOGIN_TPS}" \
    'BEGIN { printf "%.1f %.1f\n", 1 / (1 / a + 1 / b), 1 / (2 / a + 1 / b) }')
SINGLE_RATE="$(field "${OURS}" SingleUser rate)"
ALTERNATING_RATE="$(field "${OURS}" AlternatingUsers rate)"
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

row() { printf '  %-42s %7s %7s %7s %7s %6s %9s %9s\n' "$@"; }
# per_op NAME COUNT: CPU milliseconds per operation, client and server.
per_op() {
    awk -v c="${CLIENT_CPU_MS[$1]}" -v s="${SERVER_CPU_MS[$1]}" -v n="$2" \
        'BEGIN { printf "%.1f %.1f\n", c / n, s / n }'
}
PGB_COUNT=$((PER_CLIENT * CONCURRENCY))
read -r CPU_SINGLE_C CPU_SINGLE_S < <(per_op single "${ROLES}")
read -r CPU_ALT_C CPU_ALT_S < <(per_op alternating "${ROLES}")
read -r CPU_ADMIN_C CPU_ADMIN_S < <(per_op admin "${PGB_COUNT}")
read -r CPU_LOGIN_C CPU_LOGIN_S < <(per_op login "${PGB_COUNT}")
cpu_sum() { awk -v a="$1" -v b="$2" -v k="${3:-1}" 'BEGIN { printf "%.1f", k * a + b }'; }
{
    printf '\n==> Summary\n'
    printf '  machine: %s cores, %s; load average %s before, %s after\n' "$(nproc)" \
        "$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)" "${LOAD_BEFORE}" "${LOAD_AFTER}"
    printf '  PostgreSQL %s on 127.0.0.1, sslmode=disable; R = %s roles, C = %s in flight;\n' \
        "${PG_VERSION}" "${ROLES}" "${CONCURRENCY}"
    printf '  pgbench: %s transactions per run (-c %s -j %s -t %s)\n\n' \
        "$((PER_CLIENT * CONCURRENCY))" "${CONCURRENCY}" "${JOBS}" "${PER_CLIENT}"
    printf '  CPU ms/op: CPU time per rotation (pgbench: per transaction), of the client process\n'
    printf '  and of the server backends; ms columns of pgbench rows are its average latency.\n\n'
    row "measurement" "per s" "p50 ms" "p95 ms" "p99 ms" "errors" "client" "server"
    row "" "" "" "" "" "" "CPU ms/op" "CPU ms/op"
    row "keyturn SingleUser rotations" "$(field "${OURS}" SingleUser rate)" \
        "$(field "${OURS}" SingleUser p50_ms)" "$(field "${OURS}" SingleUser p95_ms)" \
        "$(field "${OURS}" SingleUser p99_ms)" "$(field "${OURS}" SingleUser errors)" \
        "${CPU_SINGLE_C}" "${CPU_SINGLE_S}"
    row "keyturn AlternatingUsers rotations" "$(field "${OURS}" AlternatingUsers rate)" \
        "$(field "${OURS}" AlternatingUsers p50_ms)" "$(field "${OURS}" AlternatingUsers p95_ms)" \
        "$(field "${OURS}" AlternatingUsers p99_ms)" "$(field "${OURS}" AlternatingUsers errors)" \
        "${CPU_ALT_C}" "${CPU_ALT_S}"
    row "pgbench -C admin login + ALTER ROLE (a)" "$(printf '%.1f' "${ADMIN_TPS}")" \
        "$(pgbench_latency "${KEYTURN_STATE}/pgbench-admin.out")" "" "" \
        "$(pgbench_failed "${KEYTURN_STATE}/pgbench-admin.out")" "${CPU_ADMIN_C}" "${CPU_ADMIN_S}"
    row "pgbench -C role login + SELECT (b)" "$(printf '%.1f' "${LOGIN_TPS}")" \
        "$(pgbench_latency "${KEYTURN_STATE}/pgbench-login.out")" "" "" \
        "$(pgbench_failed "${KEYTURN_STATE}/pgbench-login.out")" "${CPU_LOGIN_C}" "${CPU_LOGIN_S}"
    row "pgbench rotation 1/(1/a+1/b)" "${PGB_SINGLE}" "" "" "" "" \
        "$(cpu_sum "${CPU_ADMIN_C}" "${CPU_LOGIN_C}")" "$(cpu_sum "${CPU_ADMIN_S}" "${CPU_LOGIN_S}")"
    row "pgbench alternating rotation 1/(2/a+1/b)" "${PGB_ALTERNATING}" "" "" "" "" \
        "$(cpu_sum "${CPU_ADMIN_C}" "${CPU_LOGIN_C}" 2)" "$(cpu_sum "${CPU_ADMIN_S}" "${CPU_LOGIN_S}" 2)"
    printf '\n  SingleUser:       keyturn / pgbench = %s (target >= 0.80)\n' \
        "$(ratio "${SINGLE_RATE}" "${PGB_SINGLE}")"
    printf '  AlternatingUsers: keyturn / pgbench = %s (pgbench without the privilege comparison)\n' \
        "$(ratio "${ALTERNATING_RATE}" "${PGB_ALTERNATING}")"
} | tee "${KEYTURN_LOG_DIR}/bench-summary.txt"
