# Sluice: the binary and the example plugins. Runs the single-machine default unless told
# otherwise; docker-compose.yml runs it with config/production.toml on Kafka.
FROM rust:1-bookworm AS build
RUN rustup target add wasm32-wasip2
WORKDIR /src
COPY . .
# librdkafka builds from source with the system's OpenSSL and zlib (both in this image).
# The Rust example plugins only: the image has no Python or Node.js toolchain.
RUN cargo build --release --locked -p sluice && scripts/build-plugins.sh rust

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates libssl3 zlib1g \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --home-dir /var/lib/sluice sluice \
    && mkdir -p /var/lib/sluice /opt/sluice \
    && chown sluice /var/lib/sluice
COPY --from=build /src/target/release/sluice /usr/local/bin/sluice
COPY --from=build /src/target/plugins /opt/sluice/target/plugins
COPY config /opt/sluice/config
USER sluice
WORKDIR /opt/sluice
EXPOSE 8080
ENTRYPOINT ["sluice"]
CMD ["run", "--listen", "0.0.0.0:8080", "--data-dir", "/var/lib/sluice"]
