# Multi-stage build: compile with the Rust toolchain, ship only the binary on a
# minimal runtime image as a non-root user.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin fixrx-realtime

# distroless/cc: glibc and libgcc only, no shell; its `nonroot` user is uid 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/fixrx-realtime /usr/local/bin/fixrx-realtime
USER nonroot:nonroot
ENV HOST=0.0.0.0 \
    PORT=3000 \
    APP_ENV=production \
    LOG_FORMAT=json
EXPOSE 3000
# Liveness: GET /health; readiness: GET /ready (503 while shutting down or Redis is down).
ENTRYPOINT ["/usr/local/bin/fixrx-realtime"]
