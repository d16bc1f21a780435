# The prober and the monitor (and the offline verifier) in a slim image. The vTPM backend is
# left out (`--no-default-features`: no libtss2): the responder runs in the CVM itself, from the
# systemd unit in deploy/systemd/.
#
#   docker build -t locus .
#   docker run -v /etc/locus:/etc/locus:ro -v locus-data:/var/lib/locus -p 19464:19464 \
#       locus prober --config /etc/locus/prober.toml
#   docker run -v /etc/locus:/etc/locus:ro -v locus-data:/var/lib/locus -p 19465:19465 \
#       locus monitor --db /var/lib/locus/locus.db --config /etc/locus/monitor.toml \
#       --policy /etc/locus/policy.toml \
#       --evidence-policy /etc/locus/evidence-policy.toml \
#       --listen 0.0.0.0:19465
#
# (The config's `listen` must be 0.0.0.0:19464 for /metrics to be reachable from outside.)

FROM rust:1-slim-bookworm AS build
WORKDIR /src
# pkg-config only: no TPM stack, SQLite is bundled.
RUN apt-get update && apt-get install -y --no-install-recommends pkg-config \
    && rm -rf /var/lib/apt/lists/*
COPY . .
RUN cargo build --release --locked --no-default-features --bin locus \
    && strip target/release/locus

FROM debian:bookworm-slim
RUN useradd --system --home-dir /var/lib/locus --create-home --shell /usr/sbin/nologin locus
COPY --from=build /src/target/release/locus /usr/local/bin/locus
COPY config/ /usr/share/locus/config/
USER locus
WORKDIR /var/lib/locus
VOLUME /var/lib/locus
EXPOSE 19464 19465
ENTRYPOINT ["/usr/local/bin/locus"]
CMD ["prober", "--config", "/etc/locus/prober.toml"]
