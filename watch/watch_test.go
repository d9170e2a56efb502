package watch

import (
	"context"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

func TestUntilWakesOnTheChangeThatMakesTheConditionTrue(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.RWMutex
		s, n := New(), 0
		done := make(chan error, 1)
		go func() { done <- Until(context.Background(), mu.RLocker(), s, func() bool { return n >= 2 }) }()
		for range 2 {
			synctest.Wait()
			select {
			case err := <-done:
				t.Fatalf("returned early (n=%d): %v", n, err)
			default:
			}
			mu.Lock()
			n++
			s.Notify()
			mu.Unlock()
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	})
}

func TestUntilEndsWithItsContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if err := Until(ctx, &mu, New(), func() bool { return false }); err != context.DeadlineExceeded {
			t.Fatalf("err = %v", err)
		}
	})
}
