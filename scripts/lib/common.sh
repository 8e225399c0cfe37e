# shellcheck shell=bash
# Shared helpers for scripts/*.sh: messages, phase timing, quiet logged commands.
# Source it from a script that has `set -euo pipefail`; it defines no traps and runs nothing.

# Repository root (scripts/lib/ -> ../..) and the places the scripts write to.
KEYTURN_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
KEYTURN_TARGET="${KEYTURN_ROOT}/target"
KEYTURN_LOG_DIR="${KEYTURN_TARGET}/test-logs"

info() { printf '    %s\n' "$*" >&2; }
warn() { printf 'warning: %s\n' "$*" >&2; }
die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

_now() { date +%s.%N; }
_elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

# Phase bookkeeping: `phase NAME` closes the previous phase and opens NAME;
# `phase_end` closes the last one; `phase_summary` prints the table.
_PHASE_NAME=""
_PHASE_START=""
_PHASE_LINES=()
phase() {
    phase_end
    _PHASE_NAME="$1"
    _PHASE_START="$(_now)"
    printf '\n==> %s\n' "$1" >&2
}
# phase_end [STATUS]: STATUS is recorded beside the time (default "ok").
phase_end() {
    if [[ -n "${_PHASE_NAME}" ]]; then
        _PHASE_LINES+=("$(printf '%-34s %7ss  %s' "${_PHASE_NAME}" "$(_elapsed "${_PHASE_START}" "$(_now)")" "${1:-ok}")")
        _PHASE_NAME=""
    fi
}
phase_summary() {
    phase_end "${1:-interrupted}"
    ((${#_PHASE_LINES[@]})) || return 0
    printf '\n==> Phase times\n' >&2
    printf '    %s\n' "${_PHASE_LINES[@]}" >&2
}

# Prints the last lines of a log file, framed, to stderr.
show_log() {
    local file="$1" lines="${2:-60}"
    if [[ -s "${file}" ]]; then
        printf -- '----- last %s lines of %s -----\n' "${lines}" "${file}" >&2
        tail -n "${lines}" "${file}" >&2
        printf -- '----- end of %s -----\n' "${file}" >&2
    else
        printf '(log %s is empty or missing)\n' "${file}" >&2
    fi
}

# run_logged LOGFILE CMD...: runs CMD with all output appended to LOGFILE; on failure shows it.
run_logged() {
    local log="$1"
    shift
    mkdir -p "$(dirname "${log}")"
    printf '\n$ %s\n' "$*" >>"${log}"
    if "$@" >>"${log}" 2>&1 </dev/null; then
        return 0
    else
        local rc=$?
        printf 'error: `%s` failed with exit code %s\n' "$*" "${rc}" >&2
        show_log "${log}" 80
        return "${rc}"
    fi
}
