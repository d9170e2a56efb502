// Command devkafka runs a single-broker Kafka (kfake, the Kafka wire
// protocol in process) on its own, so tests and local setups can run the
// broker in a process apart from webhookd: crash tests kill webhookd while the
// broker keeps every record.
//
//	devkafka -addr 127.0.0.1:0 -data-dir /tmp/kafka
//
// Once the broker accepts connections it prints exactly one line to stdout,
// `listening <host:port>`; SIGTERM or SIGINT closes the cluster (flushing its
// data when -data-dir is set) and exits 0.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/afftok/webhookd/devstack"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "devkafka:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("devkafka", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:9092", "listen address (127.0.0.1 only; port 0 picks a free port)")
	dataDir := fs.String("data-dir", "", "directory the broker persists topics, offsets and groups under (empty: memory only)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	k, err := devstack.StartKafka(*addr, *dataDir)
	if err != nil {
		return err
	}
	defer k.Close()
	bound := k.Addrs()[0]
	// The listener is bound once StartKafka returns; a dial proves it before
	// anyone is told to connect.
	conn, err := net.DialTimeout("tcp", bound, 10*time.Second)
	if err != nil {
		return fmt.Errorf("broker does not accept connections on %s: %w", bound, err)
	}
	_ = conn.Close()
	fmt.Printf("listening %s\n", bound)
	<-ctx.Done()
	return nil
}
