# For users who build with Docker. The release image is built without a
# Docker daemon by `make image` (hack/tools/image); both run the same static
# binary as uid 65532 with `serve`. Multi-platform with buildx:
#   docker buildx build --platform linux/amd64,linux/arm64 -t …/orchestrator-edge:V --push .
# The binary is cross-compiled on the build machine's platform (pure Go, no
# emulation needed).
FROM --platform=$BUILDPLATFORM golang:1.26 AS build
ARG VERSION=dev
ARG TARGETOS=linux
ARG TARGETARCH
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/orchestrator ./cmd/orchestrator \
 && mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/orchestrator /orchestrator
COPY --from=build --chown=65532:65532 /out/data /data
ENV ORCHESTRATOR_DATA_DIR=/data
USER 65532:65532
EXPOSE 8070
ENTRYPOINT ["/orchestrator"]
CMD ["serve"]
