# Sourced by scripts/test and examples/demo.sh: installs what a fresh Debian machine lacks.
# As root with apt-get it installs; otherwise it names the packages and stops.
# Assumed present: Rust via rustup (cargo, rustc; rustfmt and clippy for scripts/test).
# `scripts/fresh-machine-check` runs examples/demo.sh on a pristine Debian root to prove this list.

# protoc finds the well-known types (google/protobuf/descriptor.proto) etcd-client's protos import:
# Debian ships them in libprotobuf-dev, which protobuf-compiler only recommends.
protoc_has_wkt() {
    local d rc
    d=$(mktemp -d) || return 1
    printf 'syntax = "proto3";\nimport "google/protobuf/descriptor.proto";\n' >"$d/t.proto"
    protoc -I"$d" -o/dev/null "$d/t.proto" >/dev/null 2>&1 && rc=0 || rc=1
    rm -rf "$d"
    return $rc
}

ensure_deps() {
    local missing=()
    if ! command -v protoc >/dev/null 2>&1; then
        missing+=(protobuf-compiler libprotobuf-dev)                    # etcd-client's build script
    elif ! protoc_has_wkt; then
        missing+=(libprotobuf-dev)
    fi
    command -v cc >/dev/null 2>&1 || missing+=(gcc libc6-dev)           # linker; ring's C code
    # cargo fetches crates over HTTPS (a minimal root has no CA certificates)
    [ -n "${CARGO_HTTP_CAINFO:-}" ] || [ -e /etc/ssl/certs/ca-certificates.crt ] || missing+=(ca-certificates)
    if [ -z "${ETCD_BIN:-}" ] && ! command -v etcd >/dev/null 2>&1; then
        missing+=(etcd-server)                                          # the real etcd the tests run
    fi
    command -v etcdctl >/dev/null 2>&1 || missing+=(etcd-client)        # benchmarks compare with etcdctl lock
    command -v python3 >/dev/null 2>&1 || missing+=(python3)            # test helper programs
    command -v unshare >/dev/null 2>&1 || missing+=(util-linux)         # PID 1 tests
    command -v ip >/dev/null 2>&1 || missing+=(iproute2)                # network-namespace tests
    command -v docker >/dev/null 2>&1 || [ "${CI:-}" != true ] || missing+=(docker.io)  # container test
    if ! command -v cargo >/dev/null 2>&1; then
        echo "cargo is missing: install Rust (https://rustup.rs) first" >&2
        [ ${#missing[@]} -eq 0 ] || echo "also missing packages: ${missing[*]}" >&2
        return 1
    fi
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "installing: ${missing[*]}" >&2
        export DEBIAN_FRONTEND=noninteractive
        if ! apt-get update -qq >&2 || ! apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2; then
            echo "could not install: ${missing[*]} (apt-get failed; is a package mirror reachable?)" >&2
            return 1
        fi
        # Debian's etcd-server package enables a system etcd; ours run on their own ports, but a
        # stray one on 2379 helps nobody.
        if command -v systemctl >/dev/null 2>&1; then systemctl disable --now etcd >/dev/null 2>&1 || true; fi
    else
        local why="not root"
        [ "$(id -u)" != 0 ] || why="no apt-get"
        echo "missing packages (cannot install them here: $why): ${missing[*]}" >&2
        echo "install them, e.g.: sudo apt-get install --no-install-recommends ${missing[*]}" >&2
        return 1
    fi
}
