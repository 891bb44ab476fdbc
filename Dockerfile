# syntax=docker/dockerfile:1
#
# A Mephisto example app as a container image: a static Go binary on a
# distroless base, run as a non-root user, with its data dir on a volume.
#
#   docker build -t mephisto-wordcount .                            # examples/wordcount
#   docker build --build-arg EXAMPLE=orders -t mephisto-orders .    # another example
#   docker run --rm mephisto-wordcount agents
#
# docker-compose.yml runs three nodes of it on Apache Kafka, with
# Prometheus and Grafana (docs/operations.md, "Running with docker
# compose"). There is no container engine on the project's machines:
# deploy/deploy_test.go runs the `go build` line below on the host and
# checks that it yields a static binary, and checks this file against
# go.mod and the compose file.

# The Go of go.mod's `go` line (the test keeps them equal).
ARG GO_VERSION=1.26.0

FROM --platform=$BUILDPLATFORM golang:${GO_VERSION} AS build
WORKDIR /src
# Modules first, so that a source change does not download them again.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
# Which example to build: a directory under examples/.
ARG EXAMPLE=wordcount
ARG TARGETOS
ARG TARGETARCH
# Cross-compiled for the target platform; CGO_ENABLED=0: a static binary
# that needs no libc in the final image.
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH go build -trimpath -ldflags="-s -w" -o /out/app ./examples/$EXAMPLE
# The data dir, created here (the final image has no shell) and copied
# with the non-root owner, so that a fresh volume mounted on it is
# writable by the worker.
RUN mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/app /usr/local/bin/app
COPY --from=build --chown=65532:65532 /out/data /var/lib/mephisto
# distroless's "nonroot" user.
USER 65532:65532
# Every worker flag can come from MEPHISTO_<FLAG>: table state on the
# volume, HTTP (/metrics, /readyz, /tables) on every interface.
ENV MEPHISTO_DATA_DIR=/var/lib/mephisto \
    MEPHISTO_WEB=0.0.0.0:6066
VOLUME ["/var/lib/mephisto"]
# HTTP; gossip (memberlist: TCP and UDP); the actor transport (--actor).
EXPOSE 6066 7946/tcp 7946/udp 7947
ENTRYPOINT ["/usr/local/bin/app"]
CMD ["worker"]
