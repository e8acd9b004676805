# Build the release binary, then run it on a slim image. The binary needs no libpq or OpenSSL:
# PostgreSQL, Redis and HTTPS all go through pure-Rust clients (rustls with aws-lc-rs).
FROM rust:1.95-bookworm AS build
WORKDIR /src
RUN apt-get update && apt-get install -y --no-install-recommends cmake clang && rm -rf /var/lib/apt/lists/*
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY migrations ./migrations
COPY config ./config
COPY static ./static
RUN cargo build --release --locked --bin pigeon

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 pigeon
WORKDIR /app
COPY --from=build /src/target/release/pigeon /usr/local/bin/pigeon
COPY config ./config
USER pigeon
ENV PIGEON_ENV=production
EXPOSE 10001
ENTRYPOINT ["pigeon"]
CMD ["serve"]
