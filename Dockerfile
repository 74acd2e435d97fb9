# syntax=docker/dockerfile:1
# Sightline's container image: built in a Rust image, run from a distroless one (no shell, no
# package manager, glibc and CA certificates only) as the unprivileged user 65532.
#
#   docker build -t sightline:0.1.0 .
#   docker run --rm -p 4317:4317 -p 4318:4318 -p 13133:13133 sightline:0.1.0
#   docker run --rm -v "$PWD/configs/gateway.yaml:/etc/sightline/config.yaml:ro" sightline:0.1.0
#
# The build needs no protoc and no OpenSSL (rustls with ring; a C compiler for ring and
# mimalloc is in the Rust image).

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin sightline \
 && cp target/release/sightline /usr/local/bin/sightline \
 && /usr/local/bin/sightline validate --config configs/default.yaml

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /usr/local/bin/sightline /usr/bin/sightline
# The shipped configs, and the default one where the Kubernetes manifests mount theirs.
COPY configs/ /etc/sightline/configs/
COPY configs/default.yaml /etc/sightline/config.yaml
USER 65532:65532
WORKDIR /home/nonroot
# OTLP gRPC and HTTP, self-metrics, health probes.
EXPOSE 4317 4318 8888 13133
ENTRYPOINT ["/usr/bin/sightline"]
CMD ["--config", "/etc/sightline/config.yaml"]
