# Sourced by scripts/test and examples/demo.sh: installs what a fresh Debian machine lacks.
# As root with apt-get it installs; otherwise it names the packages and stops.

ensure_deps() {
    local missing=()
    command -v protoc >/dev/null 2>&1 || missing+=(protobuf-compiler)   # etcd-client's build script
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
        return 1
    fi
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "installing: ${missing[*]}" >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq >&2
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
        # Debian's etcd-server package enables a system etcd; ours run on their own ports, but a
        # stray one on 2379 helps nobody.
        if command -v systemctl >/dev/null 2>&1; then systemctl disable --now etcd >/dev/null 2>&1 || true; fi
    else
        echo "missing packages: ${missing[*]}" >&2
        echo "install them, e.g.: sudo apt-get install ${missing[*]}" >&2
        return 1
    fi
}
