// Package ordering makes deliveries of a pipeline ordered by key
// (`ordering: "key"`) happen in the offset order of their events' Kafka
// keys, without holding anything in memory that a restart would need.
//
// Events with one key land in one source partition, owned by one replica's
// event consumer. There, deliveries of one (pipeline, key) run one at a time
// in offset order (Chain). When one leaves for a retry tier or the failover
// topic, the owner writes a lock record on the compacted order topic naming
// it (the blocker); later events of the key are parked — produced to the
// park topic, keyed like the lock so they keep their order in one partition
// — and their source offsets marked: handed to a topic is finished work.
// Whoever ends the blocker (a tier or failover consumer on any replica:
// delivered, dead-lettered, cancelled) writes a release record. The owner
// reads the order topic and, on the release of its key's blocker, drains the
// parked events in order, each as a first attempt; one that leaves again
// becomes the new blocker and the rest stay parked. A new owner of a
// partition reads the order topic to its end before it processes the
// partition, so it knows the locks another replica left.
package ordering

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/afftok/webhookd/delivery"
)

// Record keys on the order topic: a key lock and the release of its blocker
// are two keys, so compaction keeps the last of each.
const (
	lockPrefix    = "lock|"
	releasePrefix = "rel|"
	// syncKey marks a catch-up (Orderer.catchUp); it carries nothing.
	syncKey = "sync"
)

// Lock is the state of a locked key: the delivery it waits for and where its
// parked events begin.
type Lock struct {
	Order string `json:"order"` // delivery.OrderKey
	// Blocker is the delivery id the key waits for; BlockerOffset its
	// event's offset in the source partition. Events before it are done.
	Blocker       string `json:"blocker"`
	BlockerOffset int64  `json:"blocker_offset"`
	// Topic and Partition are the source partition of the key's events: its
	// owner is the one writer of this lock.
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	// ParkPartition and ParkFrom: the key's parked events are the records
	// with its key in that partition of the park topic from ParkFrom on.
	// ParkFrom is -1 while none is parked.
	ParkPartition int32 `json:"park_partition"`
	ParkFrom      int64 `json:"park_from"`
	// ParkedUpTo is the source offset of the last event parked (-1: none),
	// so that an event read again after a crash is not parked twice.
	ParkedUpTo int64 `json:"parked_up_to"`
}

// Release says a blocker ended.
type Release struct {
	Order      string `json:"order"`
	DeliveryID string `json:"delivery_id"`
	Topic      string `json:"topic"`
	Partition  int32  `json:"partition"`
}

func (l *Lock) record(topic string) *kgo.Record {
	b, _ := json.Marshal(l) // plain data
	return &kgo.Record{Topic: topic, Key: []byte(lockPrefix + l.Order), Value: b}
}

// ReleaseRecord is the release of the key t holds, for the order topic.
func ReleaseRecord(topic string, t *delivery.Task) *kgo.Record {
	r := Release{Order: t.Order, DeliveryID: t.DeliveryID}
	if t.Source != nil {
		r.Topic, r.Partition = t.Source.Topic, t.Source.Partition
	}
	b, _ := json.Marshal(r) // plain data
	return &kgo.Record{Topic: topic, Key: []byte(releasePrefix + t.Order), Value: b}
}

// tombstones clear a key: its lock and its last release.
func tombstones(topic, order string) []*kgo.Record {
	return []*kgo.Record{{Topic: topic, Key: []byte(lockPrefix + order)}, {Topic: topic, Key: []byte(releasePrefix + order)}}
}

// entry is one order-topic record, decoded.
type entry struct {
	order   string
	lock    *Lock    // a lock record; nil with release nil: a tombstone
	release *Release // a release record
	isLock  bool     // the key is a lock's (a tombstone of a lock when lock is nil)
}

// decodeEntry reads an order-topic record.
func decodeEntry(key, value []byte) (entry, error) {
	k := string(key)
	switch {
	case k == syncKey:
		return entry{}, nil
	case strings.HasPrefix(k, lockPrefix):
		e := entry{order: k[len(lockPrefix):], isLock: true}
		if value == nil {
			return e, nil
		}
		var l Lock
		if err := json.Unmarshal(value, &l); err != nil {
			return e, fmt.Errorf("lock %q: %w", e.order, err)
		}
		if l.Order != e.order || l.Blocker == "" {
			return e, fmt.Errorf("lock %q: does not name its key and blocker", e.order)
		}
		e.lock = &l
		return e, nil
	case strings.HasPrefix(k, releasePrefix):
		e := entry{order: k[len(releasePrefix):]}
		if value == nil {
			return e, nil
		}
		var r Release
		if err := json.Unmarshal(value, &r); err != nil {
			return e, fmt.Errorf("release %q: %w", e.order, err)
		}
		if r.Order != e.order || r.DeliveryID == "" {
			return e, fmt.Errorf("release %q: does not name its key and delivery", e.order)
		}
		e.release = &r
		return e, nil
	}
	return entry{}, fmt.Errorf("order-topic key %q is neither a lock nor a release", k)
}
