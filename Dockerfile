# The ember image the Helm chart (helm/ember) runs:
#
#   docker build -t ember:0.1.0 .
#
# Stage one builds the release binary; stage two is a distroless base holding
# glibc, libgcc and CA certificates (object storage over TLS), no shell and no
# package manager, with the binary and nothing else. It runs as user 10001, the
# chart's runAsUser, and writes nothing outside its volumes, so the chart's
# read-only root file system holds.

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin ember \
    && install -D -m 0755 target/release/ember /out/usr/bin/ember \
    && install -d /out/var/lib/ember

FROM gcr.io/distroless/cc-debian12
COPY --from=build /out/usr/bin/ember /usr/bin/ember
COPY --from=build --chown=10001:10001 /out/var/lib/ember /var/lib/ember
USER 10001:10001
# `ember` without flags stores under ./data: here, owned by the user above.
WORKDIR /var/lib/ember
EXPOSE 4040 7946
ENTRYPOINT ["/usr/bin/ember"]
