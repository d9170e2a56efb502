//go:build nochdb

package analytics

import (
	"errors"
	"log/slog"
)

// Built with -tags nochdb (the production image): no chDB backend, and no
// purego, whose dlopen support links the binary against libc and libdl
// even with CGO_ENABLED=0 — a binary the distroless static image could not
// start. Serve mode talks to a ClickHouse server and never needs chDB.

// ChDBVersion is the chDB version dev builds use.
const ChDBVersion = "26.7.3-stable.1"

// DefaultPurgeAboveAnon is unused without chDB (see the chDB build).
const DefaultPurgeAboveAnon = 256 << 20

// FindChDB has nothing to find in a build without chDB.
func FindChDB() string { return "" }

func openChDB(string, string, int64, int, *slog.Logger) (backend, error) {
	return nil, errors.New("this webhookd is built without chDB (-tags nochdb): use webhookd serve with WEBHOOKD_CLICKHOUSE_ADDR")
}
