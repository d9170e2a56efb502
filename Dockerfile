# Production image: a static binary (CGO_ENABLED=0) on distroless, running as
# nonroot. Serve mode never loads libchdb.so, so it is not included (and
# .dockerignore keeps .cache out of the build context); -tags nochdb also
# leaves out the chDB loader, whose dlopen would link libc and libdl
# dynamically even with CGO_ENABLED=0.
# e2e/image_test.go runs this file's `go build` line and starts the binary in
# serve mode, so the build command cannot drift from a working one.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -tags nochdb -trimpath -ldflags="-s -w" -o /webhookd ./cmd/webhookd

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /webhookd /webhookd
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/webhookd"]
CMD ["serve"]
