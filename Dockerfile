# Multi-stage build of the hearken release binary on Debian.
FROM rust:1-bookworm AS build
# libopus (opus crate) builds with cmake; DTLS links OpenSSL; the verbal-consent
# recogniser (crates/hearken-verbal) links Debian's pocketsphinx.
RUN apt-get update && apt-get install -y --no-install-recommends cmake pkg-config libssl-dev \
      libpocketsphinx-dev libsphinxbase-dev && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin hearken

FROM debian:bookworm-slim
# libpocketsphinx3 and the English model: verbal consent (without the model the
# server starts without it and logs why).
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libssl3 \
      libpocketsphinx3 libsphinxbase3 pocketsphinx-en-us \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --home-dir /var/lib/hearken --create-home --uid 10001 hearken
COPY --from=build /src/target/release/hearken /usr/local/bin/hearken
USER hearken
WORKDIR /var/lib/hearken
ENV HEARKEN_HTTP_LISTEN=0.0.0.0:8080 \
    HEARKEN_MEDIA_BIND_IP=0.0.0.0 \
    HEARKEN_STORAGE_DATA_DIR=/var/lib/hearken
# HTTP (WHIP + API + metrics), then one UDP port per media worker
# (set HEARKEN_MEDIA_WORKERS to match the range you publish).
EXPOSE 8080/tcp
EXPOSE 40000-40063/udp
VOLUME ["/var/lib/hearken"]
ENTRYPOINT ["/usr/local/bin/hearken"]
CMD ["serve"]
