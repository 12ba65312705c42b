# syntax=docker/dockerfile:1
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X github.com/trackops/trackops/internal/app.Version=${VERSION}" \
    -o /out/trackops ./cmd/trackops

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/trackops /usr/local/bin/trackops
ENV TRACKOPS_HTTP_ADDR=0.0.0.0:8080 \
    TRACKOPS_CONNECT_ADDR=0.0.0.0:8083 \
    TRACKOPS_LOG_FORMAT=json \
    TRACKOPS_DATA_DIR=/var/lib/trackops
EXPOSE 8080 8083
USER nonroot
ENTRYPOINT ["trackops"]
CMD ["run"]
