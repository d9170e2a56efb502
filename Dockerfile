# Production image: serve mode never loads libchdb.so, so it is not included.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /webhookd ./cmd/webhookd

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /webhookd /webhookd
USER 65532
ENTRYPOINT ["/webhookd"]
