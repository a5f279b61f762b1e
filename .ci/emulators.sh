# shellcheck shell=bash
# .ci/emulators.sh: the blob emulators the cloud adapter tests run against.
#
#   source .ci/emulators.sh     # installs (or reuses) and starts both, exports the test variables
#   ...                         # an EXIT trap set later by the caller must call emulators_stop
#
# - moto's S3 server (PyPI, the closure pinned in .ci/s3-requirements.txt, boto3 included) on
#   127.0.0.1:9000, with the bucket $S3_BUCKET created. Exports AWS_* for object_store and
#   SANCTUM_TEST_S3=1 plus SANCTUM_TEST_S3_PYTHON (the venv's python, for the boto3 scan).
# - Azurite's blob service (npm, pinned by .ci/azurite/package-lock.json) on 127.0.0.1:10000,
#   in memory. Exports SANCTUM_TEST_AZURE=1 and AZURITE_BLOB_STORAGE_URL.
# Both keep state in memory and start empty; tests use a unique prefix each.
# On failure, sourcing returns non-zero (a caller with `set -e` stops); it never calls `exit`.

EMU_DIR=${EMU_DIR:-${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/sanctum-ci}
EMU_HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
S3_PORT=${S3_PORT:-9000}
S3_BUCKET=${S3_BUCKET:-sanctum-test}
AZURITE_PORT=${AZURITE_PORT:-10000}
MOTO_PID=
AZURITE_PID=

emulators_stop() {
    local pid
    for pid in "$MOTO_PID" "$AZURITE_PID"; do
        if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
            kill "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
        fi
    done
    MOTO_PID= AZURITE_PID=
}

# Waits up to 60 s for any HTTP answer from $1 while process $2 lives.
emu_wait_http() {
    local url=$1 pid=$2 log=$3 i
    for i in $(seq 1 600); do
        if curl -s -o /dev/null "$url"; then return 0; fi
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "emulator died; its log:" >&2; cat "$log" >&2; return 1
        fi
        sleep 0.1
    done
    echo "emulator not up at $url; its log:" >&2; cat "$log" >&2; return 1
}

emu_start_moto() {
    local sum venv
    sum=$(sha256sum "$EMU_HERE/s3-requirements.txt" | cut -c1-16)
    venv=$EMU_DIR/moto-$sum
    if [[ ! -x "$venv/bin/moto_server" ]]; then
        rm -rf "$venv"
        python3 -m venv "$venv" || return 1
        "$venv/bin/pip" install -q --no-cache-dir --disable-pip-version-check \
            -r "$EMU_HERE/s3-requirements.txt" || return 1
    fi
    "$venv/bin/moto_server" -H 127.0.0.1 -p "$S3_PORT" >"$EMU_DIR/moto.log" 2>&1 &
    MOTO_PID=$!
    emu_wait_http "http://127.0.0.1:$S3_PORT/" "$MOTO_PID" "$EMU_DIR/moto.log" || return 1
    curl -sf -o /dev/null -X PUT "http://127.0.0.1:$S3_PORT/$S3_BUCKET" || return 1
    export AWS_ENDPOINT="http://127.0.0.1:$S3_PORT" AWS_ALLOW_HTTP=true \
        AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1 \
        AWS_VIRTUAL_HOSTED_STYLE_REQUEST=false AWS_BUCKET="$S3_BUCKET" \
        SANCTUM_TEST_S3=1 SANCTUM_TEST_S3_PYTHON="$venv/bin/python"
    echo "moto S3 up on $AWS_ENDPOINT (pid $MOTO_PID), bucket $S3_BUCKET"
}

emu_start_azurite() {
    local sum dir
    sum=$(sha256sum "$EMU_HERE/azurite/package-lock.json" | cut -c1-16)
    dir=$EMU_DIR/azurite-$sum
    if [[ ! -x "$dir/node_modules/.bin/azurite-blob" ]]; then
        rm -rf "$dir"
        mkdir -p "$dir" || return 1
        cp "$EMU_HERE/azurite/package.json" "$EMU_HERE/azurite/package-lock.json" "$dir/"
        (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error) || return 1
    fi
    # The node binary itself (not a wrapper), so the PID is the one to stop.
    node "$dir/node_modules/azurite/dist/src/blob/main.js" --blobHost 127.0.0.1 \
        --blobPort "$AZURITE_PORT" --inMemoryPersistence --extentMemoryLimit 1024 \
        --disableTelemetry --silent >"$EMU_DIR/azurite.log" 2>&1 &
    AZURITE_PID=$!
    emu_wait_http "http://127.0.0.1:$AZURITE_PORT/devstoreaccount1?comp=list" "$AZURITE_PID" \
        "$EMU_DIR/azurite.log" || return 1
    export SANCTUM_TEST_AZURE=1 AZURITE_BLOB_STORAGE_URL="http://127.0.0.1:$AZURITE_PORT"
    echo "Azurite blob up on $AZURITE_BLOB_STORAGE_URL (pid $AZURITE_PID)"
}

mkdir -p "$EMU_DIR"
emu_start_moto && emu_start_azurite
