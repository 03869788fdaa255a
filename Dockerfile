# bufpool-server container. Build stage: Debian's toolchain and -dev packages, release build, the
# tests. Runtime stage: the server and the two shared libraries it needs (spdlog, fmt).
# Build here with scripts/container (podman, a locally made debian:bookworm base image).
FROM debian:bookworm AS build
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      cmake ninja-build g++ pkg-config libasio-dev nlohmann-json3-dev libspdlog-dev libcli11-dev node-llhttp \
      doctest-dev && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cmake --preset release -DBUFPOOL_BUILD_BENCH=OFF -DBUFPOOL_WERROR=ON \
 && cmake --build --preset release -j "$(nproc)" \
 && ctest --preset release -j "$(nproc)"

FROM debian:bookworm
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libspdlog1.10 libfmt9 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --no-create-home bufpool
COPY --from=build /src/build/release/bin/bufpool-server /usr/local/bin/bufpool-server
COPY config/server.json /etc/bufpool/server.json
USER bufpool
EXPOSE 8080 8081 9901
ENV BUFPOOL_HTTP_LISTEN=0.0.0.0:8080 BUFPOOL_ECHO_LISTEN=0.0.0.0:8081 BUFPOOL_ADMIN_LISTEN=0.0.0.0:9901
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/bufpool-server", "--config", "/etc/bufpool/server.json"]
