# Shared by the scripts and the shell tests: the one list of Debian packages the project needs, the
# step that installs whichever of them are missing (as root on Debian 12; apt-get update first), the
# container set-up, and helpers to start a local bufpool-server and GET from it.
# shellcheck shell=bash

# What building the programs needs (scripts/run installs only these).
BUFPOOL_RUN_PACKAGES=(
  cmake ninja-build g++ pkg-config        # toolchain
  libasio-dev nlohmann-json3-dev          # the library's own dependencies
  libspdlog-dev libcli11-dev node-llhttp  # the server and load generator (llhttp's C sources)
  liburing-dev                            # the server's io_uring backend (and bench/ceiling's responder)
  libssl-dev                              # TLS (OpenSSL 3.0)
  libdeflate-dev                          # gzip answers of /echo (docs/benchmarks.md 12: faster than zlib)
  libnghttp2-dev                          # HTTP/2 (nghttp2's sans-I/O session)
)
# Everything (scripts/test): the above, then tests, benchmarks, fuzzing and the Boost.Asio build.
BUFPOOL_PACKAGES=(
  "${BUFPOOL_RUN_PACKAGES[@]}"
  doctest-dev libbenchmark-dev            # tests and benchmarks
  libboost-dev                            # the library's tests again with Boost.Asio
  clang libclang-rt-14-dev                # the fuzz preset (libFuzzer, ASan+UBSan)
  chromium                                # renders the HTML report and the dashboard in tests
  prometheus                              # promtool and a real Prometheus scrape /metrics in a test
  openssl curl                            # TLS tests from outside: openssl s_client / s_server, curl
  zlib1g-dev                              # bench/gzip-compare (zlib against libdeflate)
  python3-h2 nghttp2-client               # HTTP/2 tests frame by frame (/usr/bin/python3), h2load and nghttp
  tmux                                    # the load generator's live view, tested on a real terminal
)

# ensure_packages [PACKAGE...]: installs whichever are missing (default: all of BUFPOOL_PACKAGES).
ensure_packages() {
  local wanted=("$@")
  ((${#wanted[@]})) || wanted=("${BUFPOOL_PACKAGES[@]}")
  local missing=()
  local p
  for p in "${wanted[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
      missing+=("$p")
    fi
  done
  if ((${#missing[@]})); then
    echo "==> installing: ${missing[*]}"
    local sudo=()
    [[ $(id -u) -eq 0 ]] || sudo=(sudo)
    "${sudo[@]}" apt-get update
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y --no-install-recommends "${missing[@]}"
  fi
}

# build_preset NAME [extra cmake args...]: configure and build one preset from CMakePresets.json.
build_preset() {
  local preset=$1
  shift
  echo "==> configure and build: $preset"
  cmake --preset "$preset" "$@" >/dev/null
  cmake --build --preset "$preset" -j "$(nproc)"
}

# container_setup: what podman needs on this kind of machine (no Docker engine, no registry; see
# README.md, Running the container): podman, runc, debootstrap, catatonit (for `podman kube play`); a
# containers.conf that picks runc and ulimits the machine allows, through CONTAINERS_CONF (no change to
# /etc); and a local debian:bookworm base image made with debootstrap's minbase variant and trimmed
# like debian:bookworm-slim, once.
container_setup() {
  ensure_packages podman runc debootstrap catatonit python3-yaml  # python3-yaml: scripts/job-pods
  BUFPOOL_CONTAINERS_CONF=$(mktemp)
  cat >"$BUFPOOL_CONTAINERS_CONF" <<'TOML'
[containers]
default_ulimits = ["nofile=16384:16384", "nproc=4096:4096"]
[engine]
runtime = "runc"
TOML
  export CONTAINERS_CONF=$BUFPOOL_CONTAINERS_CONF
  if ! podman image exists docker.io/library/debian:bookworm; then
    local mirror rootfs
    mirror=$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1)
    [[ -n $mirror ]] || mirror=$(awk '/^deb /{print $2; exit}' /etc/apt/sources.list 2>/dev/null)
    rootfs=$(mktemp -d)
    echo "==> making the base image debian:bookworm (debootstrap --variant=minbase, $mirror)"
    debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >/dev/null
    # Trimmed as debian:bookworm-slim is: no package lists or downloaded packages, no docs, man pages
    # or translations, and dpkg told to skip them in later installs (206 MB -> about 80 MB).
    rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/* "$rootfs"/usr/share/doc/* \
      "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/usr/share/locale/*
    printf '%s\n' 'path-exclude /usr/share/doc/*' 'path-include /usr/share/doc/*/copyright' \
      'path-exclude /usr/share/man/*' 'path-exclude /usr/share/info/*' 'path-exclude /usr/share/locale/*' \
      >"$rootfs/etc/dpkg/dpkg.cfg.d/bufpool-slim"
    tar -C "$rootfs" -c . | podman import - docker.io/library/debian:bookworm >/dev/null
    rm -rf "$rootfs"
  fi
}

# The project's version: the one place is bufpool/include/bufpool/version.hpp.
bufpool_version() {
  awk '/^#define BUFPOOL_VERSION_(MAJOR|MINOR|PATCH) [0-9]+$/ { v = v (v == "" ? "" : ".") $3 } END { print v }' \
    bufpool/include/bufpool/version.hpp
}

# container_build: builds ./Dockerfile as bufpool-server:VERSION and :latest (docker format, which
# keeps HEALTHCHECK), and removes the build stage's dangling image.
container_build() {
  local version source_url
  version=$(bufpool_version)
  source_url=$(git remote get-url origin 2>/dev/null || echo unknown)
  podman build --pull=never --format docker --build-arg BUFPOOL_VERSION="$version" \
    --build-arg BUFPOOL_SOURCE="$source_url" -t "bufpool-server:$version" .
  podman tag "bufpool-server:$version" bufpool-server:latest
  podman image prune -f >/dev/null
}

# start_local_server WORK SERVER [server flags...]: starts bufpool-server with its http and admin
# listeners on 127.0.0.1, ports picked by the kernel (echo off, 2 threads unless the flags say
# otherwise), waits up to 5 s for its ready file in WORK, and sets SERVER_PID, HTTP_PORT, ADMIN_PORT.
# The caller stops it (kill "$SERVER_PID").
start_local_server() {
  local work=$1 server=$2
  shift 2
  "$server" --http-listen 127.0.0.1:0 --echo-listen "" --admin-listen 127.0.0.1:0 --threads 2 --log-level warn \
    --ready-file "$work/ready.json" "$@" &
  SERVER_PID=$!
  local _
  for _ in $(seq 1 100); do [[ -s $work/ready.json ]] && break; sleep 0.05; done
  [[ -s $work/ready.json ]] || { echo "bufpool-server did not start" >&2; return 1; }
  HTTP_PORT=$(sed 's/.*"http":\([0-9]*\).*/\1/' "$work/ready.json")
  ADMIN_PORT=$(sed 's/.*"admin":\([0-9]*\).*/\1/' "$work/ready.json")
}

# http_get PORT PATH: GET http://127.0.0.1:PORT/PATH through bash's /dev/tcp (the machine needs no
# HTTP client); prints the body.
http_get() {
  exec 3<>"/dev/tcp/127.0.0.1/$1"
  printf 'GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' "$2" >&3
  sed '1,/^\r$/d' <&3
  exec 3<&-
}
