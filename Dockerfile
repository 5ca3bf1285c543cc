FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bins

FROM debian:bookworm-slim
# OpenSSL for the mail action's TLS (native-tls) and the system's CA store.
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates libssl3 \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/siemparse /src/target/release/siemquery /src/target/release/siemtrigger /usr/local/bin/
ENTRYPOINT []
