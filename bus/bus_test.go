package bus

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/afftok/webhookd/config"
)

func TestParseTiers(t *testing.T) {
	tiers, err := ParseTiers(" 1m,1s, 5s ")
	if err != nil || len(tiers) != 3 || tiers[0].Name != "1s" || tiers[2].Delay != time.Minute {
		t.Fatalf("%v %v", tiers, err)
	}
	for _, bad := range []string{"", "5s,5s", "0s", "-1s", "soon"} {
		if _, err := ParseTiers(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestTopicNamesAreMadeInOnePlace(t *testing.T) {
	cfg := config.Defaults(config.ModeServe)
	cfg.TopicPrefix, cfg.RetryTiers = "p.", "1s,5s,10s,30s,1m"
	tp, err := NewTopics(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	if tp.DLQ != "p.webhooks.dlq" || tp.Failover != "p.webhooks.failover" || tp.Tiers[1].Topic != "p.webhooks.retry.5s" {
		t.Fatalf("%+v", tp)
	}
	for d, want := range map[time.Duration]string{300 * time.Millisecond: "1s", time.Second: "1s", 7 * time.Second: "5s", 10 * time.Second: "10s", 59 * time.Second: "30s", time.Hour: "1m"} {
		if got := tp.TierFor(d).Name; got != want {
			t.Errorf("TierFor(%v) = %s, want %s", d, got, want)
		}
	}
}

func TestTooLargeRecognisesTheBrokersAndTheClientsRefusal(t *testing.T) {
	for _, err := range []error{kerr.MessageTooLarge, kerr.RecordListTooLarge, fmt.Errorf("%w (uncompressed_bytes=2000000)", kerr.MessageTooLarge)} {
		if !TooLarge(err) {
			t.Errorf("%v not recognised", err)
		}
	}
	for _, err := range []error{kerr.NotLeaderForPartition, errors.New("message too large"), nil} {
		if TooLarge(err) {
			t.Errorf("%v taken for too large", err)
		}
	}
}
