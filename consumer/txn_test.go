package consumer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/afftok/webhookd/bus"
)

// txnCluster is a kfake broker with the source topic ev (one partition) and
// the output topic out.
func txnCluster(t *testing.T) (*kfake.Cluster, *kgo.Client) {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "ev", "out"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return c, cl
}

// outputs reads topic out to its end: the values a read-committed (or
// read-uncommitted) reader sees. Transaction markers are read too (and left
// out of the values), so the reader reaches the end offset.
func outputs(t *testing.T, c *kfake.Cluster, committed bool) []string {
	t.Helper()
	iso := kgo.ReadUncommitted()
	if committed {
		iso = kgo.ReadCommitted()
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.ConsumeTopics("out"), kgo.FetchIsolationLevel(iso),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.KeepControlRecords())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	list := adm.ListEndOffsets
	if committed {
		list = adm.ListCommittedOffsets // the last stable offset
	}
	ends, err := list(context.Background(), "out")
	if err != nil {
		t.Fatal(err)
	}
	end, _ := ends.Lookup("out", 0)
	got := []string{}
	var pos int64
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for pos < end.Offset && ctx.Err() == nil {
		cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
			if !r.Attrs.IsControl() {
				got = append(got, string(r.Value))
			}
			pos = r.Offset + 1
		})
	}
	if pos < end.Offset {
		t.Fatalf("read %s up to %d of %d", "out", pos, end.Offset)
	}
	return got
}

// relay's jobs hand each record on to topic out (through bus.Produce, as the
// engine does); records whose value is in block wait until released.
type relay struct {
	gate
	big bool // hand on a record too large for the client, with a fallback
}

func (r *relay) Prepare(rec *kgo.Record) Work {
	id := string(rec.Value)
	return Work{Jobs: []Job{func(ctx context.Context, cl *kgo.Client) error {
		r.mu.Lock()
		ch := r.block[id]
		r.mu.Unlock()
		if ch != nil {
			select {
			case <-ch:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		if r.big {
			bus.BufferOf(ctx).Add(bus.Deferred{Rec: &kgo.Record{Topic: "out", Value: bytes.Repeat([]byte("x"), 4096)},
				Refused: func(err error) ([]bus.Deferred, error) {
					if !bus.TooLarge(err) {
						return nil, err
					}
					return []bus.Deferred{{Rec: &kgo.Record{Topic: "out", Value: []byte("small-" + id)}}}, nil
				}})
		} else if err := bus.ProduceAll(ctx, cl, &kgo.Record{Topic: "out", Value: []byte("out-" + id)}); err != nil {
			return err
		}
		r.done <- id
		return nil
	}}}
}

// waitDone waits for a job to finish, failing if the consumer stops.
func waitDone(t *testing.T, done chan string, errc chan error) {
	t.Helper()
	select {
	case <-done:
	case err := <-errc:
		t.Fatalf("consumer stopped: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("no job finished")
	}
}

func produceEv(t *testing.T, cl *kgo.Client, n int) {
	t.Helper()
	for i := range n {
		if err := cl.ProduceSync(context.Background(), &kgo.Record{Topic: "ev", Value: []byte(fmt.Sprintf("e%d", i))}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
}

func txnOptions() Options {
	return Options{Transactions: true, TransactionalID: "test-txn"}
}

// With transactions, what a record's jobs hand on is produced only once the
// record is part of the finished prefix, in the transaction that commits
// its offset: a record finished behind an unfinished one has produced
// nothing yet, not even uncommitted, and its offset is not committed.
func TestTransactionsProduceAndCommitOnlyTheFinishedPrefix(t *testing.T) {
	c, cl := txnCluster(t)
	adm := kadm.NewClient(cl)
	r := &relay{gate: gate{block: map[string]chan struct{}{"e1": make(chan struct{})}, done: make(chan string, 16)}}
	produceEv(t, cl, 5)
	cancel, errc := start(t, c, r, txnOptions())
	for range 4 { // e0, e2, e3, e4
		waitDone(t, r.done, errc)
	}
	waitCommitted(t, adm, 1)
	if got := outputs(t, c, true); len(got) != 1 || got[0] != "out-e0" {
		t.Fatalf("read committed sees %v, want [out-e0]", got)
	}
	if got := outputs(t, c, false); len(got) != 1 {
		t.Fatalf("read uncommitted sees %v: records of unfinished-prefix work were produced", got)
	}
	close(r.block["e1"])
	waitDone(t, r.done, errc)
	waitCommitted(t, adm, 5)
	want := map[string]bool{"out-e0": true, "out-e1": true, "out-e2": true, "out-e3": true, "out-e4": true}
	got := outputs(t, c, true)
	for _, v := range got {
		if !want[v] {
			t.Fatalf("unexpected or repeated output %q in %v", v, got)
		}
		delete(want, v)
	}
	if len(want) > 0 {
		t.Fatalf("missing outputs %v (got %v)", want, got)
	}
	cancel()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

// A transaction that fails (here its offset commit, then its end) is
// aborted: nothing of it is visible to read-committed readers, nothing is
// marked, and the same work is committed by a later transaction exactly once.
func TestTransactionsAbortedWorkIsCommittedLaterExactlyOnce(t *testing.T) {
	c, cl := txnCluster(t)
	adm := kadm.NewClient(cl)
	h := c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.TxnOffsetCommit}, Err: kerr.UnknownServerError, Count: 2},
		kfake.Fault{Keys: []kmsg.Key{kmsg.EndTxn}, Err: kerr.UnknownServerError, Count: 1})
	defer h.Remove()
	r := &relay{gate: gate{done: make(chan string, 16)}}
	produceEv(t, cl, 3)
	cancel, errc := start(t, c, r, txnOptions())
	for range 3 {
		waitDone(t, r.done, errc)
	}
	waitCommitted(t, adm, 3)
	got := outputs(t, c, true)
	if len(got) != 3 {
		t.Fatalf("read committed sees %v, want each of out-e0..2 once", got)
	}
	seen := map[string]bool{}
	for _, v := range got {
		if seen[v] {
			t.Fatalf("%q committed twice: %v", v, got)
		}
		seen[v] = true
	}
	cancel()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

// A record Kafka refuses for good inside the transaction is replaced by what
// its job said takes its place (the engine's task → DLQ item chain), and the
// work is committed.
func TestTransactionsReplaceARefusedRecord(t *testing.T) {
	c, cl := txnCluster(t)
	adm := kadm.NewClient(cl)
	r := &relay{gate: gate{done: make(chan string, 16)}, big: true}
	produceEv(t, cl, 2)
	o := txnOptions()
	o.ClientOpts = []kgo.Opt{kgo.ProducerBatchMaxBytes(1024)}
	cancel, errc := start(t, c, r, o)
	for range 2 {
		waitDone(t, r.done, errc)
	}
	waitCommitted(t, adm, 2)
	if got := outputs(t, c, true); len(got) != 2 || got[0] != "small-e0" || got[1] != "small-e1" {
		t.Fatalf("read committed sees %v, want the replacements", got)
	}
	cancel()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

// A refusal nothing can replace stops the consumer, committing nothing of
// the record.
func TestTransactionsUnreplaceableRefusalIsFatal(t *testing.T) {
	c, cl := txnCluster(t)
	adm := kadm.NewClient(cl)
	h := handlerFunc(func(rec *kgo.Record) Work {
		return Work{Jobs: []Job{func(ctx context.Context, cl *kgo.Client) error {
			return bus.ProduceAll(ctx, cl, &kgo.Record{Topic: "out", Value: bytes.Repeat([]byte("x"), 4096)})
		}}}
	})
	produceEv(t, cl, 1)
	o := txnOptions()
	o.ClientOpts = []kgo.Opt{kgo.ProducerBatchMaxBytes(1024)}
	_, errc := start(t, c, h, o)
	select {
	case err := <-errc:
		if !errors.Is(err, kerr.MessageTooLarge) {
			t.Fatalf("err = %v, want the refusal", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("consumer did not stop")
	}
	if n := committed(t, adm); n != 0 {
		t.Fatalf("committed %d", n)
	}
	if got := outputs(t, c, true); len(got) != 0 {
		t.Fatalf("read committed sees %v", got)
	}
}

// A topic written in transactions ends with a marker: the committed offset
// passes it once everything is done, so the group shows no lag.
func TestCommittedOffsetPassesTransactionMarkers(t *testing.T) {
	for _, txn := range []bool{false, true} {
		t.Run(fmt.Sprintf("transactions=%v", txn), func(t *testing.T) {
			c, cl := txnCluster(t)
			adm := kadm.NewClient(cl)
			tx, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.TransactionalID("writer"))
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Close()
			for i := range 2 {
				if err := tx.BeginTransaction(); err != nil {
					t.Fatal(err)
				}
				if err := tx.ProduceSync(context.Background(), &kgo.Record{Topic: "ev", Value: []byte(fmt.Sprintf("e%d", i))}).FirstErr(); err != nil {
					t.Fatal(err)
				}
				if err := tx.EndTransaction(context.Background(), kgo.TryCommit); err != nil {
					t.Fatal(err)
				}
			}
			r := &relay{gate: gate{done: make(chan string, 16)}}
			o := Options{}
			if txn {
				o = txnOptions()
			}
			cancel, errc := start(t, c, r, o)
			for range 2 {
				waitDone(t, r.done, errc)
			}
			waitCommitted(t, adm, 4) // two records, two markers
			cancel()
			if err := <-errc; err != nil {
				t.Fatal(err)
			}
		})
	}
}
