package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// bareBody is about what webhookd renders for the benchmark's pipeline.
var bareBody = []byte(`{"seq":123456,"sent":1732708800000000000,"event":"click","country":"US","device":"mobile"}`)

// runBare is the baseline: a plain net/http client posting n requests with c
// at a time to the receiver, in a process of its own so its CPU can be read.
func runBare(args []string) error {
	fs := flag.NewFlagSet("bare", flag.ContinueOnError)
	url := fs.String("url", "", "receiver URL")
	n := fs.Int("n", 200000, "requests")
	c := fs.Int("c", 64, "concurrent requests")
	if err := fs.Parse(args); err != nil {
		return err
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: *c, MaxIdleConns: *c}}
	var next atomic.Int64
	var failed atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range *c {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(*n) {
				req, _ := http.NewRequest("POST", *url, bytes.NewReader(bareBody))
				req.Header.Set("Content-Type", "application/json")
				resp, err := client.Do(req)
				if err != nil {
					failed.Add(1)
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}()
	}
	wg.Wait()
	if f := failed.Load(); f > 0 {
		return fmt.Errorf("%d of %d requests failed", f, *n)
	}
	return json.NewEncoder(os.Stdout).Encode(map[string]any{"n": *n, "seconds": time.Since(start).Seconds()})
}
