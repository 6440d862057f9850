# regauth container image: a static-ish release build on Debian slim.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin regauth

FROM debian:bookworm-slim
# /certs is where compose.toml keeps the signing key; owned by regauth so a
# fresh named volume inherits a writable directory.
RUN useradd --system --uid 10001 regauth && mkdir -p /etc/regauth /var/lib/regauth /certs \
    && chown regauth /var/lib/regauth /certs
COPY --from=build /src/target/release/regauth /usr/local/bin/regauth
COPY config/ /etc/regauth/
USER regauth
WORKDIR /var/lib/regauth
EXPOSE 5001
ENTRYPOINT ["/usr/local/bin/regauth", "--log-format", "json"]
CMD ["serve", "--config", "/etc/regauth/regauth.toml"]
