# shellcheck shell=bash
# .ci/ports.sh: loopback port helpers shared by .ci/openbao.sh and .ci/emulators.sh, so that a
# test server is only ever one this script started, on a port nobody else holds.
# Needs python3 (to pick a port), ss (iproute2) and pgrep (procps).

# Prints a TCP port on 127.0.0.1 that nothing is bound to right now.
ci_free_port() {
    python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}

# Prints process $1 and all its descendants, space-separated, with a space at each end.
ci_pid_tree() {
    local todo=$1 out=" " pid kids
    while [[ -n "$todo" ]]; do
        pid=${todo%% *}
        todo=${todo#"$pid"}
        todo=${todo# }
        out+="$pid "
        kids=$(pgrep -P "$pid" 2>/dev/null) || kids=
        [[ -z "$kids" ]] || todo+="${todo:+ }${kids//$'\n'/ }"
    done
    printf '%s' "$out"
}

# Succeeds when something listens on TCP port $1 and every listener on it belongs to process
# $2 or one of its descendants.
ci_owns_port() {
    local port=$1 pid=$2 lines line tree rest p mine
    lines=$(ss -ltnpH "sport = :$port" 2>/dev/null) || return 1
    [[ -n "$lines" ]] || return 1
    tree=$(ci_pid_tree "$pid")
    while IFS= read -r line; do
        mine=
        rest=$line
        while [[ "$rest" =~ pid=([0-9]+) ]]; do
            p=${BASH_REMATCH[1]}
            [[ "$tree" == *" $p "* ]] || return 1
            mine=1
            rest=${rest#*pid="$p"}
        done
        [[ -n "$mine" ]] || return 1 # a listener whose owner ss cannot show is not ours
    done <<<"$lines"
    return 0
}

# Prints who listens on TCP port $1 (ss lines), or "nobody".
ci_port_holders() {
    local lines
    lines=$(ss -ltnpH "sport = :$1" 2>/dev/null) || lines=
    printf '%s' "${lines:-nobody}"
}
