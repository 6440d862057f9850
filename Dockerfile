# regauth container image.
#
#   docker build -t regauth .                       # builds regauth from source (rust:1-bookworm, pinned)
#   docker build --target prebuilt \
#     --build-arg BINARY=target/release/regauth -t regauth .   # a binary built on a Debian 12 host
#
# The runtime is Debian 12 slim with the CA roots (for HTTPS to identity
# providers), a non-root user, and a production-shaped default config
# (/etc/regauth/regauth.toml) that listens on 0.0.0.0:5001, keeps keys and
# state under /var/lib/regauth, has no users, and refuses to start until a
# real configuration is mounted over it.

# Both bases are pinned by digest, so a rebuild takes exactly the reviewed
# bytes; Renovate's dockerfile manager (or `crane digest IMAGE:TAG` by
# hand) bumps the ARG defaults. A build may pass another base with
# --build-arg (the tests pass a local debootstrap image as DEBIAN).
ARG DEBIAN=debian:bookworm-slim@sha256:3783cc01769c7b2b1b83a5c5ad96c815348e28ed7da68e2e3687004faa906251
ARG RUST=rust:1-bookworm@sha256:82150a52ec202c1b14d7817e14516c392bb7f5cfebd88f1ed531cb37ebd39922

FROM ${DEBIAN} AS runtime-base
RUN set -eu; \
    if [ ! -e /etc/ssl/certs/ca-certificates.crt ]; then \
        apt-get update; \
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ca-certificates; \
        rm -rf /var/lib/apt/lists/*; \
    fi; \
    useradd --system --uid 10001 --home-dir /var/lib/regauth regauth; \
    mkdir -p /etc/regauth /var/lib/regauth/keys /var/lib/regauth/state /certs; \
    chown -R regauth /var/lib/regauth /certs
COPY deploy/container/regauth.toml /etc/regauth/regauth.toml
USER regauth
WORKDIR /var/lib/regauth
EXPOSE 5001
ENTRYPOINT ["/usr/local/bin/regauth", "--log-format", "json"]
CMD ["serve", "--config", "/etc/regauth/regauth.toml"]

# A binary built outside the image (tests, offline builds): before the
# build stage, so building this target never needs the Rust image.
FROM runtime-base AS prebuilt
ARG BINARY=target/release/regauth
COPY ${BINARY} /usr/local/bin/regauth

FROM ${RUST} AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin regauth

FROM runtime-base AS runtime
COPY --from=build /src/target/release/regauth /usr/local/bin/regauth
