// Command bench measures webhookd end to end against a bare HTTP client, on
// this machine, in one run (make bench):
//
//	bench run -bin ./bin -out bench-results.json   the whole benchmark (default)
//	bench receiver -addr 127.0.0.1:0                the fast receiver (a process of its own)
//	bench bare -url URL -n N -c C                   the bare net/http client (a process of its own)
//
// `run` starts the broker (devkafka, with a data directory), the receiver and
// webhookd (`webhookd dev` against that broker: every role, the ClickHouse
// sink included) as separate processes, generates load open-loop from its own
// process with each event's send time inside it, and reconciles a ledger for
// every phase: published = delivered + dead + missing. A run with missing
// deliveries is void and says so.
package main

import (
	"fmt"
	"os"
)

func main() {
	cmd, args := "run", os.Args[1:]
	if len(args) > 0 && (args[0] == "run" || args[0] == "receiver" || args[0] == "bare") {
		cmd, args = args[0], args[1:]
	}
	var err error
	switch cmd {
	case "receiver":
		err = runReceiver(args)
	case "bare":
		err = runBare(args)
	default:
		err = runBench(args)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}
