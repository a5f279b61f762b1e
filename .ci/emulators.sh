# shellcheck shell=bash
# .ci/emulators.sh: the blob emulators the cloud adapter tests run against.
#
#   source .ci/emulators.sh     # installs (or reuses) and starts both, exports the test variables
#   ...                         # the caller's EXIT trap must call emulators_stop
#
# - moto's S3 server (PyPI, the closure pinned in .ci/s3-requirements.txt, boto3 included), with
#   the bucket $S3_BUCKET created. Exports AWS_* (AWS_ENDPOINT=http://127.0.0.1:<port>) for
#   object_store and SANCTUM_TEST_S3=1 plus SANCTUM_TEST_S3_PYTHON (the venv's python, for the
#   boto3 scan).
# - Azurite's blob service (npm, pinned by .ci/azurite/package-lock.json), in memory. Exports
#   SANCTUM_TEST_AZURE=1 and AZURITE_BLOB_STORAGE_URL=http://127.0.0.1:<port>.
# Ports: each server gets a free loopback port picked at start (so a server someone else runs on
# 9000 or 10000 is never used). S3_PORT / AZURITE_PORT, when set and non-empty, force a port
# instead; if it is taken, sourcing fails with a message naming it. A server counts as up only
# when the process started here is alive, answers HTTP, and owns every listener on its port
# (checked with `ss`, iproute2; a child of that process counts as it). A picked port lost to a
# race ("address already in use") is retried with a new one, up to 3 tries.
# Both keep state in memory and start empty; tests use a unique prefix each.
# On failure, sourcing stops what it started and returns non-zero (a caller with `set -e`
# stops); it never calls `exit`.

EMU_DIR=${EMU_DIR:-${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/sanctum-ci}
EMU_HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
S3_BUCKET=${S3_BUCKET:-sanctum-test}
MOTO_PID=
AZURITE_PID=
EMU_IN_USE='address already in use|EADDRINUSE|is in use by another program'
# shellcheck source=.ci/ports.sh
source "$EMU_HERE/ports.sh"

emulators_stop() {
    local pid
    for pid in "$MOTO_PID" "$AZURITE_PID"; do
        if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
            kill "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
        fi
    done
    MOTO_PID='' AZURITE_PID=''
}

# Starts a server and waits until it is ours and answers:
#   emu_serve NAME PORT_OVERRIDE LOG PROBE_PATH CMD... ('{port}' in CMD becomes the port)
# On success sets EMU_PORT and EMU_PID. With an empty PORT_OVERRIDE the port is picked free, and
# picked again (up to 3 tries) when the server dies with "address already in use".
emu_serve() {
    local name=$1 override=$2 log=$3 probe=$4 try port pid why
    shift 4
    EMU_PORT='' EMU_PID=''
    for try in 1 2 3; do
        if [[ -n "$override" ]]; then
            port=$override
        else
            port=$(ci_free_port) || { echo "$name: cannot pick a free port (python3)" >&2; return 1; }
        fi
        "${@//\{port\}/$port}" >"$log" 2>&1 </dev/null &
        pid=$!
        why=timeout
        for _ in $(seq 1 600); do # up to 60 s
            if ! kill -0 "$pid" 2>/dev/null; then
                why=died
                break
            fi
            # Some servers (Azurite) log the bind failure and stay alive.
            grep -qiE "$EMU_IN_USE" "$log" 2>/dev/null && break
            if ci_owns_port "$port" "$pid" && curl -s -o /dev/null -m 2 "http://127.0.0.1:$port$probe"; then
                why=
                break
            fi
            sleep 0.1
        done
        if [[ -n "$why" ]] && grep -qiE "$EMU_IN_USE" "$log" 2>/dev/null; then
            why=in-use
        fi
        if [[ -z "$why" ]]; then
            EMU_PORT=$port EMU_PID=$pid
            return 0
        fi
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        case $why in
        in-use)
            if [[ -z "$override" && "$try" -lt 3 ]]; then
                echo "$name: port $port was taken meanwhile; trying another one" >&2
                continue
            fi
            echo "$name: port $port on 127.0.0.1 is already in use (held by: $(ci_port_holders "$port")); not using a server we did not start" >&2
            ;;
        died)
            echo "$name: the server exited before answering on port $port; its log:" >&2
            cat "$log" >&2
            ;;
        timeout)
            echo "$name: no answer from our server (pid $pid) on port $port within 60 s (port held by: $(ci_port_holders "$port")); its log:" >&2
            cat "$log" >&2
            ;;
        esac
        return 1
    done
    return 1
}

emu_start_moto() {
    local sum venv
    sum=$(sha256sum "$EMU_HERE/s3-requirements.txt" | cut -c1-16) || return 1
    venv=$EMU_DIR/moto-$sum
    if [[ ! -x "$venv/bin/moto_server" ]]; then
        rm -rf "$venv"
        python3 -m venv "$venv" || return 1
        "$venv/bin/pip" install -q --no-cache-dir --disable-pip-version-check \
            -r "$EMU_HERE/s3-requirements.txt" || return 1
    fi
    emu_serve "moto S3" "${S3_PORT:-}" "$EMU_DIR/moto.log" / \
        "$venv/bin/moto_server" -H 127.0.0.1 -p '{port}' || return 1
    MOTO_PID=$EMU_PID
    curl -sf -o /dev/null -X PUT "http://127.0.0.1:$EMU_PORT/$S3_BUCKET" || {
        echo "moto S3: creating bucket $S3_BUCKET on port $EMU_PORT failed" >&2
        return 1
    }
    if ! kill -0 "$MOTO_PID" 2>/dev/null || ! ci_owns_port "$EMU_PORT" "$MOTO_PID"; then
        echo "moto S3: port $EMU_PORT is no longer held by our server (pid $MOTO_PID; held by: $(ci_port_holders "$EMU_PORT"))" >&2
        return 1
    fi
    export AWS_ENDPOINT="http://127.0.0.1:$EMU_PORT" AWS_ALLOW_HTTP=true \
        AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1 \
        AWS_VIRTUAL_HOSTED_STYLE_REQUEST=false AWS_BUCKET="$S3_BUCKET" \
        SANCTUM_TEST_S3=1 SANCTUM_TEST_S3_PYTHON="$venv/bin/python"
    echo "moto S3 up on $AWS_ENDPOINT (pid $MOTO_PID), bucket $S3_BUCKET"
}

emu_start_azurite() {
    local sum dir
    sum=$(sha256sum "$EMU_HERE/azurite/package-lock.json" | cut -c1-16) || return 1
    dir=$EMU_DIR/azurite-$sum
    if [[ ! -x "$dir/node_modules/.bin/azurite-blob" ]]; then
        rm -rf "$dir"
        mkdir -p "$dir" || return 1
        cp "$EMU_HERE/azurite/package.json" "$EMU_HERE/azurite/package-lock.json" "$dir/" || return 1
        (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error) || return 1
    fi
    # The node binary itself (not a wrapper), so the PID is the one to stop.
    emu_serve "Azurite blob" "${AZURITE_PORT:-}" "$EMU_DIR/azurite.log" "/devstoreaccount1?comp=list" \
        node "$dir/node_modules/azurite/dist/src/blob/main.js" --blobHost 127.0.0.1 \
        --blobPort '{port}' --inMemoryPersistence --extentMemoryLimit 1024 \
        --disableTelemetry --silent || return 1
    AZURITE_PID=$EMU_PID
    export SANCTUM_TEST_AZURE=1 AZURITE_BLOB_STORAGE_URL="http://127.0.0.1:$EMU_PORT"
    echo "Azurite blob up on $AZURITE_BLOB_STORAGE_URL (pid $AZURITE_PID)"
}

emu_start() {
    local tool
    for tool in ss pgrep curl python3; do
        command -v "$tool" >/dev/null 2>&1 || {
            echo "emulators: '$tool' is required (ss: iproute2, pgrep: procps) to start and verify the servers" >&2
            return 1
        }
    done
    mkdir -p "$EMU_DIR" || return 1
    emu_start_moto && emu_start_azurite
}

emu_start || { emulators_stop; false; }
