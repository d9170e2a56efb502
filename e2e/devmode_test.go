package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

// ownBrokerEnv runs `webhookd dev` with its own in-process broker.
var ownBrokerEnv = map[string]string{"WEBHOOKD_KAFKA_BROKERS": "", "WEBHOOKD_DEV_KAFKA_ADDR": "127.0.0.1:0"}

// ownBroker is a client of the broker the instance's current run started
// (its address is logged; port 0 picks a new one each run).
func ownBroker(t *testing.T, in *instance) *kgo.Client {
	t.Helper()
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

// sendClick produces a click event with the given id to afftok.clicks.
func sendClick(t *testing.T, cl *kgo.Client, id string) {
	t.Helper()
	r := &kgo.Record{Topic: "afftok.clicks", Value: []byte(`{"type":"click.tracked","data":{"id":"` + id + `"}}`)}
	if err := cl.ProduceSync(t.Context(), r).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// Without WEBHOOKD_KAFKA_BROKERS, `webhookd dev` is zero-setup: it runs its
// own broker (on WEBHOOKD_DEV_KAFKA_ADDR, logged), which any Kafka client can
// produce to, and which keeps pipelines and offsets in the data directory
// across a restart.
func TestDevModeWithoutBrokersRunsItsOwnPersistentBroker(t *testing.T) {
	in := startInstance(t, "dev", ownBrokerEnv)
	cl := ownBroker(t, in)
	rcv := newReceiver(t)
	p := in.CreatePipeline(t, `{"name":"own-broker","trigger_type":"click","steps":[{"order":1,"url":"`+rcv.URL+`/own"}]}`)
	sendClick(t, cl, "own_1")
	if c := rcv.next(t); c.Path != "/own" {
		t.Fatalf("sent to %s", c.Path)
	}
	in.WaitExecution(t, p["id"].(string), "own_1")

	in.Restart(t)
	cl = ownBroker(t, in) // this run's address: port 0 picked a new one
	sendClick(t, cl, "own_2")
	// The pipeline came back from the broker's data, and own_1 (committed)
	// is not delivered again.
	if c := rcv.next(t); c.Path != "/own" || !strings.Contains(string(c.Body), "own_2") {
		t.Fatalf("after restart: sent %s to %s", c.Body, c.Path)
	}
	waitCaughtUp(t, in.Name, cl, "webhookd-dispatcher")
	rcv.noneSoFar(t)
}

// One `webhookd dev` per data directory: a second process on it stops
// before its broker or chDB touch a file, exiting non-zero with the holder's
// pid. The first goes on untouched — its broker's state file (written only
// when a broker starts fresh or stops) is as it was, and it still delivers —
// and once it has stopped, the directory is free for the next run, which
// finds the first one's pipeline and offsets.
func TestDevModeDataDirIsLockedAgainstASecondProcess(t *testing.T) {
	first := startInstance(t, "dev", ownBrokerEnv)
	cl := ownBroker(t, first)
	rcv := newReceiver(t)
	p := first.CreatePipeline(t, `{"name":"locked","trigger_type":"click","steps":[{"order":1,"url":"`+rcv.URL+`/locked"}]}`)
	meta := filepath.Join(first.DataDir, "kafka", "meta.json")
	metaBefore, err := os.Stat(meta)
	if err != nil {
		t.Fatalf("the broker's state file: %v", err)
	}
	metaBytes, _ := os.ReadFile(meta)

	second := newInstance(t, "dev", ownBrokerEnv)
	second.DataDir = first.DataDir
	if err := second.start(); err == nil {
		t.Fatal("a second webhookd dev became ready on the same data directory")
	}
	var exit *exec.ExitError
	if !errors.As(second.exitErr(), &exit) || exit.ExitCode() == 0 {
		t.Fatalf("second process: exit %v, want a non-zero exit", second.exitErr())
	}
	metaAfter, err := os.Stat(meta)
	if b, _ := os.ReadFile(meta); err != nil || !metaAfter.ModTime().Equal(metaBefore.ModTime()) || !bytes.Equal(b, metaBytes) {
		t.Errorf("the first broker's state file changed: %v → %v (%v)", metaBefore.ModTime(), metaAfter.ModTime(), err)
	}
	want := fmt.Sprintf("data dir %s is in use by another webhookd (pid %d)", first.DataDir, first.proc.cmd.Process.Pid)
	said := false
	for _, l := range second.Logs() {
		said = said || strings.Contains(l, want)
		if strings.Contains(l, "dev Kafka (kfake) listening") || strings.Contains(l, "chDB") {
			t.Errorf("the second process got as far as: %s", l)
		}
	}
	if !said {
		t.Fatalf("the second process never said %q:\n%s", want, second.logs.tail(20))
	}

	sendClick(t, cl, "lock_1")
	if c := rcv.next(t); c.Path != "/locked" || !strings.Contains(string(c.Body), "lock_1") {
		t.Fatalf("sent %s to %s", c.Body, c.Path)
	}
	first.WaitExecution(t, p["id"].(string), "lock_1")

	if took, err := first.Stop(); err != nil {
		t.Fatalf("first: exit after SIGTERM (%v): %v", took, err)
	}
	second.Start(t)
	cl = ownBroker(t, second)
	if code, out := second.API(t, "GET", "/api/admin/webhooks/pipelines/"+p["id"].(string), nil); code != 200 {
		t.Fatalf("the first run's pipeline: %d %v", code, out)
	}
	sendClick(t, cl, "lock_2")
	if c := rcv.next(t); !strings.Contains(string(c.Body), "lock_2") {
		t.Fatalf("after the first stopped: sent %s", c.Body)
	}
	waitCaughtUp(t, second.Name, cl, "webhookd-dispatcher")
	rcv.noneSoFar(t) // lock_1 (committed by the first) is not delivered again
}
