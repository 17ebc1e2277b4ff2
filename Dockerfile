# syntax=docker/dockerfile:1
# dnsfence image: a static binary on distroless (CA certificates for DoT/DoH upstreams, no shell),
# running as the unprivileged user 65532 on port 1053. Build for several platforms with
#   docker buildx build --platform linux/amd64,linux/arm64,linux/arm/v7 --build-arg VERSION=v1.2.3 .
# The builder runs natively and cross-compiles, so no emulation is needed.

FROM --platform=$BUILDPLATFORM golang:1.26 AS build
WORKDIR /src
# Modules first, so a source change does not download them again.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG TARGETOS=linux
ARG TARGETARCH
ARG TARGETVARIANT
ARG VERSION=dev
# TARGETVARIANT is v6/v7 on 32-bit ARM: GOARM wants the bare number.
RUN CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH GOARM=${TARGETVARIANT#v} \
    go build -trimpath -ldflags "-s -w -X main.version=$VERSION" -o /out/dnsfence ./cmd/dnsfence

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/dnsfence /usr/local/bin/dnsfence
COPY configs/container/dnsfence.yaml /etc/dnsfence/dnsfence.yaml
# Numeric, so Kubernetes runAsNonRoot can verify it without an /etc/passwd lookup.
USER 65532:65532
EXPOSE 1053/udp 1053/tcp 9253
ENTRYPOINT ["/usr/local/bin/dnsfence", "-config", "/etc/dnsfence/dnsfence.yaml"]
