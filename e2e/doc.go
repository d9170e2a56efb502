// Package e2e holds webhookd's black-box end-to-end tests. They build the
// webhookd and devkafka binaries, run the broker and the service as their own
// processes, and talk to them only the way a user does: Kafka records in and
// out (franz-go against the broker), the admin HTTP API, real HTTP receivers,
// and the processes themselves (their logs, signals, exit status). Nothing here
// imports the app or reaches into a package's internals.
//
// Run with `go test ./e2e` (libchdb.so is found in the repo's .cache, or set
// WEBHOOKD_CHDB_LIBRARY); WEBHOOKD_TEST_LOG=1 echoes every process's log lines.
package e2e
