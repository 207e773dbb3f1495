# Sourced by the benchmark scripts: `peer_args BIN DIR` prints the flags a replica of BIN needs to
# prove itself to its peers: `--cluster-secret-file DIR/cluster-secret` (made once) for a build that
# knows cluster secrets, nothing for an older one (which runs open, as it always did).
peer_args() {
    local bin=$1 dir=$2
    if "$bin" server --help 2>/dev/null | grep -q -- --cluster-secret-file; then
        [ -f "$dir/cluster-secret" ] || "$bin" secret generate --out "$dir/cluster-secret" >/dev/null
        echo "--cluster-secret-file $dir/cluster-secret"
    fi
}
