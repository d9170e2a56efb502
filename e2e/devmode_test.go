package e2e

import (
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Without WEBHOOKD_KAFKA_BROKERS, `webhookd dev` is zero-setup: it runs its
// own broker (on WEBHOOKD_DEV_KAFKA_ADDR, logged), which any Kafka client can
// produce to, and which keeps pipelines and offsets in the data directory
// across a restart.
func TestDevModeWithoutBrokersRunsItsOwnPersistentBroker(t *testing.T) {
	in := startInstance(t, "dev", map[string]string{"WEBHOOKD_KAFKA_BROKERS": "", "WEBHOOKD_DEV_KAFKA_ADDR": "127.0.0.1:0"})
	ownBroker := func() *kgo.Client {
		m, _ := jsonLine(in.WaitLog(t, `"msg":"dev Kafka (kfake) listening"`))
		addr, _ := m["addr"].(string)
		if addr == "" || addr == brokers {
			t.Fatalf("dev Kafka address %q (the shared broker is %s)", addr, brokers)
		}
		cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(cl.Close)
		return cl
	}
	cl := ownBroker()
	rcv := newReceiver(t)
	p := in.CreatePipeline(t, `{"name":"own-broker","trigger_type":"click","steps":[{"order":1,"url":"`+rcv.URL+`/own"}]}`)
	send := func(cl *kgo.Client, id string) {
		t.Helper()
		r := &kgo.Record{Topic: "afftok.clicks", Value: []byte(`{"type":"click.tracked","data":{"id":"` + id + `"}}`)}
		if err := cl.ProduceSync(t.Context(), r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	send(cl, "own_1")
	if c := rcv.next(t); c.Path != "/own" {
		t.Fatalf("sent to %s", c.Path)
	}
	in.WaitExecution(t, p["id"].(string), "own_1")

	in.Restart(t)
	cl = ownBroker() // this run's address: port 0 picked a new one
	send(cl, "own_2")
	// The pipeline came back from the broker's data, and own_1 (committed)
	// is not delivered again.
	if c := rcv.next(t); c.Path != "/own" || !strings.Contains(string(c.Body), "own_2") {
		t.Fatalf("after restart: sent %s to %s", c.Body, c.Path)
	}
	waitCaughtUp(t, in.Name, cl, "webhookd-dispatcher")
	rcv.noneSoFar(t)
}
