package consumer

import (
	"context"
	"sync"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

// hooks records the partition hooks' calls and holds Start until released.
type hooks struct {
	mu      sync.Mutex
	calls   []string
	release chan struct{}
	started chan struct{}
}

func (h *hooks) Start(ctx context.Context, topic string, partition int32) error {
	h.mu.Lock()
	h.calls = append(h.calls, "start")
	h.mu.Unlock()
	close(h.started)
	select {
	case <-h.release:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (h *hooks) Stop(topic string, partition int32) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.calls = append(h.calls, "stop")
}

// A partition's records wait for its Start hook (the ordering catch-up),
// and Stop comes once its work has stopped.
func TestPartitionHooksRunBeforeTheFirstRecordAndAfterTheLast(t *testing.T) {
	c, cl := cluster(t, 1)
	produceN(t, cl, 2, 1)
	h := &hooks{release: make(chan struct{}), started: make(chan struct{})}
	prepared := make(chan string, 10)
	handler := handlerFunc(func(rec *kgo.Record) Work {
		h.mu.Lock()
		h.calls = append(h.calls, "prepare")
		h.mu.Unlock()
		prepared <- string(rec.Value)
		return Work{}
	})
	cancel, errc := start(t, c, handler, Options{Hooks: h})
	<-h.started
	select {
	case id := <-prepared:
		t.Fatalf("%s was prepared before the Start hook returned", id)
	default:
	}
	close(h.release)
	<-prepared
	<-prepared
	cancel()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.calls) != 4 || h.calls[0] != "start" || h.calls[3] != "stop" {
		t.Fatalf("calls %v, want start, prepare ×2, stop", h.calls)
	}
}
