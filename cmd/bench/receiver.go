package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// receiver is the fast webhook receiver of the benchmark, in a process of its
// own. Deliveries go to /r/<pipeline index> with a body carrying the event's
// sequence number and send time; the receiver keeps, per pipeline, a bitset of
// the sequence numbers it got (the ledger) and, while a window is open, the
// event-to-delivery latency of each. /bare takes the bare client's requests.
type receiver struct {
	mu     sync.Mutex
	seen   [maxPipelines][]uint64 // bitsets by sequence number
	unique [maxPipelines]int64
	dups   int64
	lat    []int64 // µs, while recording
	rec    bool

	total atomic.Int64 // deliveries (not /bare)
	bare  atomic.Int64
}

const maxPipelines = 16

func runReceiver(args []string) error {
	fs := flag.NewFlagSet("receiver", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:0", "listen address")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	r := &receiver{}
	srv := &http.Server{Handler: r, ReadHeaderTimeout: 10 * time.Second}
	fmt.Printf("listening %s\n", ln.Addr())
	go func() {
		ch := make(chan os.Signal, 1)
		signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
		<-ch
		_ = srv.Close()
	}()
	if err := srv.Serve(ln); err != http.ErrServerClosed {
		return err
	}
	return nil
}

var okBody = []byte(`{"received":true}`)

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	switch {
	case req.URL.Path == "/bare":
		_, _ = io.Copy(io.Discard, req.Body)
		r.bare.Add(1)
		_, _ = w.Write(okBody)
	case strings.HasPrefix(req.URL.Path, "/r/"):
		idx, err := strconv.Atoi(strings.TrimPrefix(req.URL.Path, "/r/"))
		body, _ := io.ReadAll(req.Body)
		seq, sent, ok := parseDelivery(body)
		if err != nil || idx < 0 || idx >= maxPipelines || !ok {
			http.Error(w, "bad delivery", 400)
			return
		}
		r.record(idx, seq, sent)
		_, _ = w.Write(okBody)
	case req.URL.Path == "/stats":
		r.stats(w, req.URL.Query().Has("window"))
	case req.URL.Path == "/window":
		r.mu.Lock()
		r.rec, r.lat = req.URL.Query().Get("on") == "1", nil
		r.mu.Unlock()
	default:
		http.NotFound(w, req)
	}
}

// parseDelivery reads {"seq":N,"sent":N,…} without a general JSON decoder:
// the receiver must cost little next to the sender it measures.
func parseDelivery(b []byte) (seq uint64, sent int64, ok bool) {
	num := func(key string) (int64, bool) {
		i := bytes.Index(b, []byte(`"`+key+`":`))
		if i < 0 {
			return 0, false
		}
		j := i + len(key) + 3
		k := j
		for k < len(b) && b[k] >= '0' && b[k] <= '9' {
			k++
		}
		n, err := strconv.ParseInt(string(b[j:k]), 10, 64)
		return n, err == nil
	}
	s, ok1 := num("seq")
	t, ok2 := num("sent")
	return uint64(s), t, ok1 && ok2
}

func (r *receiver) record(idx int, seq uint64, sent int64) {
	now := time.Now().UnixNano()
	r.total.Add(1)
	r.mu.Lock()
	defer r.mu.Unlock()
	word := seq / 64
	if n := uint64(len(r.seen[idx])); word >= n {
		r.seen[idx] = slices.Grow(r.seen[idx], int(word-n+1+n/2))[:word+1]
	}
	bit := uint64(1) << (seq % 64)
	if r.seen[idx][word]&bit != 0 {
		r.dups++
	} else {
		r.seen[idx][word] |= bit
		r.unique[idx]++
	}
	if r.rec {
		r.lat = append(r.lat, (now-sent)/1000)
	}
}

// receiverStats is what /stats answers.
type receiverStats struct {
	Total  int64   `json:"total"`
	Unique []int64 `json:"unique"`
	Dups   int64   `json:"dups"`
	Bare   int64   `json:"bare"`
	// With ?window: latencies recorded since the window opened.
	Count int   `json:"count"`
	P50us int64 `json:"p50_us"`
	P99us int64 `json:"p99_us"`
	MaxUs int64 `json:"max_us"`
}

func (r *receiver) stats(w http.ResponseWriter, window bool) {
	r.mu.Lock()
	st := receiverStats{Total: r.total.Load(), Unique: append([]int64(nil), r.unique[:]...), Dups: r.dups, Bare: r.bare.Load()}
	var lat []int64
	if window {
		lat = append(lat, r.lat...)
	}
	r.mu.Unlock()
	if len(lat) > 0 {
		slices.Sort(lat)
		st.Count, st.P50us, st.P99us, st.MaxUs = len(lat), lat[len(lat)/2], lat[len(lat)*99/100], lat[len(lat)-1]
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(st)
}
