# The one `dolbom` binary (every service is a subcommand), non-root, on a
# slim Debian. Not built on the development machines (no Docker engine
# runs there); the Helm chart in deploy/helm/dolbom runs this image.
#
#   docker build -t ghcr.io/dolbom/dolbom:0.1.0 .

FROM rust:1.95-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends \
      cmake pkg-config zlib1g-dev libssl-dev libsasl2-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p dolbom -p dolbomctl \
    && strip target/release/dolbom target/release/dolbomctl

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends \
      ca-certificates libssl3 libsasl2-2 zlib1g \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 10001 dolbom \
    && useradd --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin dolbom
COPY --from=build /src/target/release/dolbom /src/target/release/dolbomctl /usr/local/bin/
USER 10001:10001
ENTRYPOINT ["/usr/local/bin/dolbom"]
CMD ["--help"]
