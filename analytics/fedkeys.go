package analytics

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"
)

// DefaultDedupWindow is how long the keys of fed rows are remembered
// (Options.DedupWindow; see fedKeysSchema).
const DefaultDedupWindow = 10 * time.Minute

// MaxDedupWindow bounds Options.DedupWindow: fed_keys keeps a day.
const MaxDedupWindow = 12 * time.Hour

// recentKeys are the keys fed in the last window, per Kafka partition (an
// execution's records, and a delivery's DLQ items, share their topic's
// partition, so a redelivered row meets its first delivery's key in the
// same one). Each partition's keys are read back from fed_keys the first
// time a batch of it is fed (Store.Feed): after a restart or a rebalance
// they are those fed before, by this process or another; later, those
// this process feeds. The sink forgets a partition when it loses it and
// when it is assigned it (another replica may have fed it meanwhile), and
// the store forgets a batch's partitions when its feed fails (it may have
// been written). A feed keeps the keys it started with (Store.Feed pins
// them): a forget meanwhile acts on the next one.
//
// Keys are kept by the minute they were fed: the current minute's in a
// set, older minutes' as sorted slices (8 bytes a key: at 10,000 deliveries
// a second, 10 minutes of them are about 12 M keys, ~100 MB).
type recentKeys struct {
	window time.Duration
	now    func() time.Time

	mu    sync.Mutex
	parts map[partKey]*partKeys
	// gen counts each partition's forgets: a read-back that a forget
	// overtook (the partition lost while its keys were being read) must
	// not mark it loaded with what it read.
	gen map[partKey]uint64
}

type partKeys struct {
	sealed  []keyMinute // oldest first
	current keyMinute
	open    map[int64]struct{}
}

type keyMinute struct {
	minute int64 // unix minutes
	keys   []int64
}

func newRecentKeys(window time.Duration) *recentKeys {
	return &recentKeys{window: window, now: time.Now, parts: map[partKey]*partKeys{}, gen: map[partKey]uint64{}}
}

// generation is pk's count of forgets, taken before its keys are read back
// (markLoaded).
func (r *recentKeys) generation(pk partKey) uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.gen[pk]
}

// has reports whether h was fed in pk within the window.
func (r *recentKeys) has(pk partKey, h int64) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.hasLocked(r.parts[pk], h)
}

// heldKeys is pk's keys as held now (nil: not loaded).
func (r *recentKeys) heldKeys(pk partKey) *partKeys {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.parts[pk]
}

// hasIn is has on keys pinned by heldKeys.
func (r *recentKeys) hasIn(p *partKeys, h int64) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.hasLocked(p, h)
}

func (r *recentKeys) hasLocked(p *partKeys, h int64) bool {
	if p == nil {
		return false
	}
	oldest := r.minute(r.now().Add(-r.window))
	if _, ok := p.open[h]; ok && p.current.minute >= oldest {
		return true
	}
	for _, m := range p.sealed {
		if m.minute >= oldest {
			if _, ok := slices.BinarySearch(m.keys, h); ok {
				return true
			}
		}
	}
	return false
}

// markLoadedWith starts pk's keys with the rows read back from fed_keys
// (unix minute, its hashes) from generation gen on, in one step, and
// returns them. It returns nil, starting nothing, when pk was forgotten
// since: what was read may miss keys fed meanwhile elsewhere.
func (r *recentKeys) markLoadedWith(pk partKey, gen uint64, rows [][]any) *partKeys {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.gen[pk] != gen {
		return nil
	}
	p := &partKeys{current: keyMinute{minute: r.minute(r.now())}, open: map[int64]struct{}{}}
	r.parts[pk] = p
	for _, row := range rows {
		r.addLocked(p, asInt(row[0]), asInts(row[1])...)
	}
	return p
}

func (r *recentKeys) minute(t time.Time) int64 { return t.Unix() / 60 }

// add records hashes fed in pk at minute (unix minutes; 0: now), dropping
// minutes older than the window. A partition forgotten meanwhile (the sink
// lost it while this batch was fed) stays forgotten: its keys are read back
// in full if it comes back.
func (r *recentKeys) add(pk partKey, minute int64, hs ...int64) {
	now := r.minute(r.now())
	if minute == 0 {
		minute = now
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	p := r.parts[pk]
	if p == nil {
		if pk.topic != "" {
			return
		}
		// Rows without an origin: remembered from the first.
		p = &partKeys{current: keyMinute{minute: minute}, open: map[int64]struct{}{}}
		r.parts[pk] = p
	}
	r.addLocked(p, minute, hs...)
}

func (r *recentKeys) addLocked(p *partKeys, minute int64, hs ...int64) {
	now := r.minute(r.now())
	if minute == 0 {
		minute = now
	}
	if minute != p.current.minute {
		p.seal()
		p.current = keyMinute{minute: minute}
	}
	for _, h := range hs {
		if _, ok := p.open[h]; !ok {
			p.open[h] = struct{}{}
			p.current.keys = append(p.current.keys, h)
		}
	}
	oldest := now - int64(r.window/time.Minute) - 1
	p.sealed = slices.DeleteFunc(p.sealed, func(m keyMinute) bool { return m.minute < oldest })
}

// seal moves the current minute's keys to a sorted slice (a minute read
// back out of order merges into the one sealed before it).
func (p *partKeys) seal() {
	if len(p.current.keys) > 0 {
		ks := slices.Clone(p.current.keys)
		slices.Sort(ks)
		p.sealed = append(p.sealed, keyMinute{minute: p.current.minute, keys: ks})
		slices.SortStableFunc(p.sealed, func(a, b keyMinute) int { return int(a.minute - b.minute) })
	}
	p.open = map[int64]struct{}{}
}

// forget drops the partitions' keys.
func (r *recentKeys) forget(parts map[string][]int32) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for t, ps := range parts {
		for _, p := range ps {
			r.drop(partKey{t, p})
		}
	}
}

// drop forgets pk; r.mu held.
func (r *recentKeys) drop(pk partKey) {
	delete(r.parts, pk)
	r.gen[pk]++
}

// forgetKeys drops the partitions' keys (a feed of them failed: what it
// wrote, if anything, is known from fed_keys only).
func (r *recentKeys) forgetKeys(pks map[partKey]bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for pk := range pks {
		if pk.topic != "" {
			r.drop(pk)
		}
	}
}

// loadFedKeys reads back the keys fed in pk within the window. A forget
// overtaking the read (the partition lost meanwhile) makes it read again:
// the sink forgets a partition again when it is assigned, so what is read
// for a partition this process no longer holds is dropped before it could
// serve it again.
func (s *Store) loadFedKeys(ctx context.Context, pk partKey) (*partKeys, error) {
	for range 3 {
		if p := s.recent.heldKeys(pk); p != nil {
			return p, nil
		}
		gen := s.recent.generation(pk)
		rows, err := s.b.query(ctx, `SELECT toUnixTimestamp(at) DIV 60 AS m, groupArray(h) FROM `+s.t("fed_keys")+`
		WHERE topic = {topic:String} AND partition = {partition:Int64} AND at >= now() - toIntervalSecond({window:Int64})
		GROUP BY m ORDER BY m`, Params{"topic": pk.topic, "partition": int64(pk.partition), "window": int64(s.recent.window / time.Second)})
		if err != nil {
			return nil, fmt.Errorf("fed keys of %s/%d: %w", pk.topic, pk.partition, err)
		}
		if p := s.recent.markLoadedWith(pk, gen, rows); p != nil {
			return p, nil
		}
	}
	return nil, fmt.Errorf("fed keys of %s/%d: the partition was forgotten (a rebalance) while they were read back, three times in a row", pk.topic, pk.partition)
}

// ForgetPartitions drops what the store remembers of the keys fed in these
// partitions (the sink lost them: another replica feeds them now; or it
// was assigned them: another replica may have fed them since).
func (s *Store) ForgetPartitions(parts map[string][]int32) { s.recent.forget(parts) }
