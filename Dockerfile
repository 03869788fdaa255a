# bufpool-server image (it carries bufpool-loadgen too, for load-generator pods).
# Build stage: Debian's toolchain and -dev packages, a release build of the two programs, installed
# stripped. Runtime stage: a minimal Debian (built here with debootstrap's minbase variant, see
# scripts/container; elsewhere debian:bookworm-slim works the same) with only the runtime libraries
# (spdlog, fmt, liburing, OpenSSL, libdeflate, nghttp2), no apt lists or caches, a numeric non-root user.
# Build: scripts/container build     Run: scripts/container run [podman options] -- [server flags]
ARG BUFPOOL_BASE=debian:bookworm

FROM ${BUFPOOL_BASE} AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      cmake ninja-build g++ libasio-dev nlohmann-json3-dev libspdlog-dev libcli11-dev node-llhttp liburing-dev libssl-dev libdeflate-dev libnghttp2-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cmake -S . -B /build -G Ninja -DCMAKE_BUILD_TYPE=Release -DBUFPOOL_BUILD_TESTS=OFF -DBUFPOOL_BUILD_BENCH=OFF \
      -DBUFPOOL_WERROR=ON \
 && cmake --build /build --target bufpool-server bufpool-loadgen \
 && cmake --install /build --strip --prefix /out/usr/local --component bufpool_programs \
 && /out/usr/local/bin/bufpool-server --version

FROM ${BUFPOOL_BASE}
ARG BUFPOOL_VERSION=0.0.0
ARG BUFPOOL_SOURCE=unknown
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends libspdlog1.10 libfmt9 liburing2 libssl3 libdeflate0 libnghttp2-14 \
 && apt-get clean && rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/log/apt /var/log/dpkg.log
COPY --from=build /out/usr/local/ /usr/local/
COPY config/server.json /etc/bufpool/server.json
LABEL org.opencontainers.image.title="bufpool-server" \
      org.opencontainers.image.description="Asio echo and HTTP/1.1 server whose every buffer comes from bufpool" \
      org.opencontainers.image.version="${BUFPOOL_VERSION}" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.source="${BUFPOOL_SOURCE}" \
      org.opencontainers.image.documentation="README.md: Running the container"
# 65532: no user of the base image has it; numeric, so that Kubernetes' runAsNonRoot can verify it.
USER 65532:65532
# http, echo; the admin listener (/stats, /healthz) binds 127.0.0.1:9901 inside the container: to reach
# it from outside, set BUFPOOL_ADMIN_LISTEN=0.0.0.0:9901 and publish 9901 (README: Running the container).
EXPOSE 8080 8081 9901
ENV BUFPOOL_HTTP_LISTEN=0.0.0.0:8080 BUFPOOL_ECHO_LISTEN=0.0.0.0:8081
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=2s --retries=3 \
  CMD ["/usr/local/bin/bufpool-server", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/bufpool-server", "--config", "/etc/bufpool/server.json"]
