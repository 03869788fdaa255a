# Shared by scripts/run and scripts/test: the one list of Debian packages the project needs, and the
# step that installs whichever of them are missing (as root on Debian 12; apt-get update first).
# shellcheck shell=bash

# What building the programs needs (scripts/run installs only these).
BUFPOOL_RUN_PACKAGES=(
  cmake ninja-build g++ pkg-config        # toolchain
  libasio-dev nlohmann-json3-dev          # the library's own dependencies
  libspdlog-dev libcli11-dev node-llhttp  # the server and load generator (llhttp's C sources)
)
# Everything (scripts/test): the above, then tests, benchmarks, fuzzing and the Boost.Asio build.
BUFPOOL_PACKAGES=(
  "${BUFPOOL_RUN_PACKAGES[@]}"
  doctest-dev libbenchmark-dev            # tests and benchmarks
  libboost-dev                            # the library's tests again with Boost.Asio
  clang libclang-rt-14-dev                # the fuzz preset (libFuzzer, ASan+UBSan)
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
