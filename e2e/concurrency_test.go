package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// call is a goroutine-safe admin API call.
func call(in *instance, method, path, body string, headers ...string) (int, http.Header, map[string]any, error) {
	var b any
	if body != "" {
		b = body
	}
	return in.do(method, path, b, headers...)
}

func revisionOf(out map[string]any) int {
	d, _ := out["data"].(map[string]any)
	r, _ := d["revision"].(float64)
	return int(r)
}

// Two replicas serve the admin API over one pipelines topic; clients hammer
// the same pipelines with PUTs and DELETEs at once. No write answered 200 is
// lost, a delete is final (here, after a restart, and in what compaction
// keeps), and stale preconditions get 412.
func TestConcurrentPipelineWritesAreNeverLostNorResurrected(t *testing.T) {
	prefix := "race."
	env := merge(ownTopics(prefix), map[string]string{"WEBHOOKD_ALLOW_PRIVATE_TARGETS": "true"})
	a := startInstance(t, "dev", env)
	b := startInstance(t, "dev", env)
	replicas := []*instance{a, b}
	const rounds = 100 // of each kind
	const writers = 8

	var lost, resurrected, conflicts, writes atomic.Int64
	var mu sync.Mutex
	deleted := map[string]bool{}
	final := map[string]map[string]any{} // surviving pipeline → its last known data
	create := func(name string) (string, error) {
		code, _, out, err := call(a, "POST", "/api/admin/webhooks/pipelines",
			`{"name":"`+name+`","trigger_type":"click","steps":[{"order":1,"url":"http://127.0.0.1:9/x"}]}`)
		if err != nil || code != 201 {
			return "", fmt.Errorf("create: %d %v %v", code, out, err)
		}
		return out["data"].(map[string]any)["id"].(string), nil
	}
	path := func(id string) string { return "/api/admin/webhooks/pipelines/" + id }

	// merge: writers change different fields of one pipeline through both
	// replicas, without preconditions: every change must survive.
	mergeRound := func(i int) error {
		id, err := create(fmt.Sprintf("merge-%d", i))
		if err != nil {
			return err
		}
		bodies := []string{`{"name":"renamed"}`, `{"status":"paused"}`, `{"failover_url":"http://127.0.0.1:9/fo"}`}
		for len(bodies) < writers {
			bodies = append(bodies, fmt.Sprintf(`{"description":"d%d"}`, len(bodies)))
		}
		var wg sync.WaitGroup
		codes, revs, errs := make([]int, writers), make([]int, writers), make([]error, writers)
		for w, body := range bodies {
			wg.Go(func() {
				var out map[string]any
				codes[w], _, out, errs[w] = call(replicas[w%2], "PUT", path(id), body)
				revs[w] = revisionOf(out)
				writes.Add(1)
			})
		}
		wg.Wait()
		seen := map[int]bool{}
		applied := 0
		for w, err := range errs {
			switch {
			case err != nil:
				return err
			case codes[w] == 409:
				conflicts.Add(1) // nothing changed, and the client was told
				continue
			case codes[w] != 200:
				return fmt.Errorf("PUT %s: %d", bodies[w], codes[w])
			}
			applied++
			if seen[revs[w]] {
				lost.Add(1) // two writes answered with one revision: one overwrote the other
			}
			seen[revs[w]] = true
		}
		for _, in := range replicas {
			code, _, out, err := call(in, "GET", path(id), "")
			if err != nil || code != 200 {
				return fmt.Errorf("GET after merge: %d %v", code, err)
			}
			d := out["data"].(map[string]any)
			if revisionOf(out) != 1+applied {
				lost.Add(1)
			}
			for w, f := range [][2]string{{"name", "renamed"}, {"status", "paused"}, {"failover_url", "http://127.0.0.1:9/fo"}} {
				if codes[w] == 200 && d[f[0]] != f[1] {
					lost.Add(1)
				}
			}
			if in == a {
				mu.Lock()
				final[id] = d
				mu.Unlock()
			}
		}
		return nil
	}

	// delete: a DELETE races PUTs; once it is answered 200 the pipeline is
	// gone on both replicas and every later PUT is 404.
	deleteRound := func(i int) error {
		id, err := create(fmt.Sprintf("delete-%d", i))
		if err != nil {
			return err
		}
		var wg sync.WaitGroup
		errs := make(chan error, writers)
		for w := range writers {
			wg.Go(func() {
				in := replicas[w%2]
				method, body := "PUT", fmt.Sprintf(`{"description":"w%d"}`, w)
				if w == writers/2 {
					method, body = "DELETE", ""
				}
				code, _, out, err := call(in, method, path(id), body)
				writes.Add(1)
				switch {
				case err != nil:
					errs <- err
				case method == "DELETE" && code != 200:
					errs <- fmt.Errorf("DELETE: %d %v", code, out)
				case method == "PUT" && code != 200 && code != 404:
					errs <- fmt.Errorf("PUT racing a DELETE: %d %v", code, out)
				}
			})
		}
		wg.Wait()
		close(errs)
		if err := <-errs; err != nil {
			return err
		}
		for _, in := range replicas {
			if code, _, _, err := call(in, "PUT", path(id), `{"name":"back?"}`); err != nil || code != 404 {
				resurrected.Add(1)
			}
			if code, _, _, err := call(in, "GET", path(id), ""); err != nil || code != 404 {
				resurrected.Add(1)
			}
		}
		mu.Lock()
		deleted[id] = true
		mu.Unlock()
		return nil
	}

	// precondition: writers all send the revision they read; exactly one
	// wins, the rest get 412 with the current ETag.
	preconditionRound := func(i int) error {
		id, err := create(fmt.Sprintf("ifmatch-%d", i))
		if err != nil {
			return err
		}
		code, hdr, out, err := call(b, "GET", path(id), "")
		if err != nil || code != 200 || hdr.Get("ETag") != `"1"` || revisionOf(out) != 1 {
			return fmt.Errorf("GET: %d ETag %q %v", code, hdr.Get("ETag"), err)
		}
		var won, stale atomic.Int64
		var wg sync.WaitGroup
		errs := make(chan error, writers)
		for w := range writers {
			wg.Go(func() {
				var code int
				var hdr http.Header
				var err error
				if w%2 == 0 {
					code, hdr, _, err = call(replicas[w%2], "PUT", path(id), fmt.Sprintf(`{"description":"w%d"}`, w), "If-Match", `"1"`)
				} else {
					code, hdr, _, err = call(replicas[w%2], "PUT", path(id), fmt.Sprintf(`{"description":"w%d","revision":1}`, w))
				}
				writes.Add(1)
				switch {
				case err != nil:
					errs <- err
				case code == 200 && hdr.Get("ETag") == `"2"`:
					won.Add(1)
				case code == 412 && hdr.Get("ETag") == `"2"`:
					stale.Add(1)
				default:
					errs <- fmt.Errorf("PUT If-Match: %d ETag %q", code, hdr.Get("ETag"))
				}
			})
		}
		wg.Wait()
		close(errs)
		if err := <-errs; err != nil {
			return err
		}
		if won.Load() != 1 || stale.Load() != writers-1 {
			return fmt.Errorf("If-Match round: %d won, %d stale; want 1 and %d", won.Load(), stale.Load(), writers-1)
		}
		_, _, out, _ = call(a, "GET", path(id), "")
		mu.Lock()
		final[id] = out["data"].(map[string]any)
		mu.Unlock()
		return nil
	}

	var wg sync.WaitGroup
	errs := make(chan error, 3*rounds)
	sem := make(chan struct{}, 6)
	for i := range rounds {
		for _, round := range []func(int) error{mergeRound, deleteRound, preconditionRound} {
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				if err := round(i); err != nil {
					errs <- err
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		return
	}

	// What survives a restart of both replicas (read back from the topic)
	// and what compaction would keep (each key's last record).
	for _, in := range replicas {
		if _, err := in.Stop(); err != nil {
			t.Fatal(err)
		}
	}
	a.Start(t)
	for id := range deleted {
		if code, _ := a.API(t, "GET", path(id), nil); code != 404 {
			resurrected.Add(1)
		}
	}
	for id, want := range final {
		code, out := a.API(t, "GET", path(id), nil)
		d, _ := out["data"].(map[string]any)
		if code != 200 || d["revision"] != want["revision"] || d["description"] != want["description"] || d["name"] != want["name"] {
			lost.Add(1)
		}
	}
	// Each key's last record on the topic: what compaction keeps.
	last := map[string]*kgo.Record{}
	ends, err := kadm.NewClient(producer).ListEndOffsets(context.Background(), prefix+"webhooks.pipelines")
	if err != nil {
		t.Fatal(err)
	}
	end, _ := ends.Lookup(prefix+"webhooks.pipelines", 0)
	var n, restates int
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers), kgo.ConsumeTopics(prefix+"webhooks.pipelines"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), arriveWithin)
	defer cancel()
	for read := int64(0); read < end.Offset && ctx.Err() == nil; {
		cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
			n++
			read = r.Offset + 1
			last[string(r.Key)] = r
			for _, h := range r.Headers {
				if h.Key == "webhookd-restate" {
					restates++
				}
			}
		})
	}
	if len(last) != len(deleted)+len(final) {
		t.Errorf("%d keys on the topic, want %d", len(last), len(deleted)+len(final))
	}
	for id, r := range last {
		if deleted[id] != (r.Value == nil) {
			t.Errorf("%s: last record %s (offset %d, headers %v), deleted %v", id, r.Value, r.Offset, r.Headers, deleted[id])
			resurrected.Add(1)
		}
		if want, ok := final[id]; ok {
			var p struct{ Revision float64 }
			if json.Unmarshal(r.Value, &p) != nil || p.Revision != want["revision"] {
				t.Errorf("%s: last record at revision %v, want %v", id, p.Revision, want["revision"])
				lost.Add(1)
			}
		}
	}
	t.Logf("%d rounds (%d merge, %d delete, %d If-Match) over 2 replicas: %d writes, %d answered 409, lost %d, resurrected %d; %d pipeline records, %d of them re-statements after a refused write",
		3*rounds, rounds, rounds, rounds, writes.Load(), conflicts.Load(), lost.Load(), resurrected.Load(), n, restates)
	if lost.Load() != 0 || resurrected.Load() != 0 {
		t.Fatalf("lost %d, resurrected %d", lost.Load(), resurrected.Load())
	}
}
