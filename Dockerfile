# syntax=docker/dockerfile:1
# TrackOps in a distroless image, as a non-root user. Runs with the
# embedded broker (no TRACKOPS_KAFKA_BROKERS; its log under
# /var/lib/trackops/kafka, mount a volume there) or against a real Kafka
# cluster. See docs/deployment.md.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X github.com/trackops/trackops/internal/app.Version=${VERSION}" \
    -o /out/trackops ./cmd/trackops
# The data directory must exist and belong to the runtime user: the
# distroless nonroot user (65532) cannot create directories under /var/lib.
RUN mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/trackops /usr/local/bin/trackops
COPY --from=build --chown=65532:65532 /out/data /var/lib/trackops
ENV TRACKOPS_HTTP_ADDR=0.0.0.0:8080 \
    TRACKOPS_CONNECT_ADDR=0.0.0.0:8083 \
    TRACKOPS_LOG_FORMAT=json \
    TRACKOPS_DATA_DIR=/var/lib/trackops
VOLUME ["/var/lib/trackops"]
EXPOSE 8080 8083
USER 65532:65532
# No shell or curl in the image: the binary probes its own /health/ready.
HEALTHCHECK --interval=10s --timeout=5s --start-period=90s --retries=3 CMD ["trackops", "healthcheck"]
ENTRYPOINT ["trackops"]
CMD ["run"]
