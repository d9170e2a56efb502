package e2e

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// BenchmarkDelivery measures end-to-end deliveries (Kafka event → the shared
// webhookd process's consumer → render → HMAC → HTTP POST → executions
// records acknowledged) against a baseline of a bare net/http client posting
// the same body to the same receiver with the same concurrency, in the same
// run. Compare the two deliveries/s figures as a ratio; absolute numbers
// depend on the machine.
func BenchmarkDelivery(b *testing.B) {
	var got atomic.Int64
	var target atomic.Int64
	done := make(chan struct{}, 1)
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = bytes.NewBuffer(nil).ReadFrom(r.Body)
		w.WriteHeader(200)
		if got.Add(1) == target.Load() {
			done <- struct{}{}
		}
	}))
	defer rcv.Close()
	body := []byte(`{"event":"click","click_id":"clk_1","country":"US","device":"mobile"}`)
	const concurrency = 64

	b.Run("bare-http-client", func(b *testing.B) {
		client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: concurrency}}
		var wg sync.WaitGroup
		var next atomic.Int64
		b.ResetTimer()
		for range concurrency {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for next.Add(1) <= int64(b.N) {
					resp, err := client.Post(rcv.URL, "application/json", bytes.NewReader(body))
					if err != nil {
						b.Error(err)
						return
					}
					resp.Body.Close()
				}
			}()
		}
		wg.Wait()
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "deliveries/s")
	})

	b.Run("webhookd-end-to-end", func(b *testing.B) {
		// Created and deleted per round (not with Cleanup, which runs after
		// every round): one pipeline, so one delivery per event.
		code, out := api(b, "POST", "/api/admin/webhooks/pipelines", `{"name":"bench","trigger_type":"click","steps":[{"order":1,"url":"`+rcv.URL+`/b","signing_key":"k",
		  "body_template":{"event":"{{trigger_type}}","click_id":"{{click.id}}","country":"{{click.country}}","device":"{{click.device}}"}}]}`)
		if code != 201 {
			b.Fatalf("create pipeline: %d %v", code, out)
		}
		id := out["data"].(map[string]any)["id"].(string)
		got.Store(0)
		target.Store(int64(b.N))
		recs := make([]*kgo.Record, b.N)
		for i := range recs {
			recs[i] = &kgo.Record{Topic: "afftok.clicks", Key: []byte(fmt.Sprint(i)),
				Value: []byte(fmt.Sprintf(`{"id":"bench_%d_%d","type":"click.tracked","data":{"id":"clk_%d","country":"US","device":"mobile"}}`, b.N, i, i))}
		}
		b.ResetTimer()
		if err := producer.ProduceSync(b.Context(), recs...).FirstErr(); err != nil {
			b.Fatal(err)
		}
		select {
		case <-done:
		case <-time.After(5 * time.Minute):
			b.Fatalf("only %d of %d delivered", got.Load(), b.N)
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "deliveries/s")
		b.StopTimer()
		// B/op and allocs/op count this process (the producer) only; the
		// service's memory is its resident set, chDB included.
		if rss := shared.RSS(); rss > 0 {
			b.ReportMetric(float64(rss)/(1<<20), "webhookd-RSS-MiB")
		}
		if code, out := api(b, "DELETE", "/api/admin/webhooks/pipelines/"+id, nil); code != 200 {
			b.Fatalf("delete pipeline: %d %v", code, out)
		}
	})
}
