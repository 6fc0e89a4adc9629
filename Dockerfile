# Multi-stage build of sorcha-peer: release binary on a small Debian runtime, non-root.
# Build: docker build -t sorcha-peer .   Run: docker run -p 5000:5000 -v sorcha-data:/var/lib/sorcha sorcha-peer
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked && strip target/release/sorcha-peer

FROM debian:bookworm-slim
# Unpinned on purpose: take the current Debian stable security updates of these two packages.
# hadolint ignore=DL3008
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home /var/lib/sorcha sorcha \
    && mkdir -p /var/lib/sorcha && chown 10001 /var/lib/sorcha
COPY --from=build /src/target/release/sorcha-peer /usr/local/bin/sorcha-peer
USER 10001
WORKDIR /var/lib/sorcha
VOLUME ["/var/lib/sorcha"]
EXPOSE 5000
ENV SORCHA_LISTEN=0.0.0.0:5000 SORCHA_DATA_DIR=/var/lib/sorcha
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s \
    CMD ["curl", "-fsS", "http://127.0.0.1:5000/health"]
ENTRYPOINT ["sorcha-peer"]
CMD ["serve"]
