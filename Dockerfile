FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bins

FROM debian:bookworm-slim
COPY --from=build /src/target/release/siemparse /src/target/release/siemquery /src/target/release/siemtrigger /usr/local/bin/
ENTRYPOINT []
