package admin

import (
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/afftok/webhookd/event"
	"github.com/afftok/webhookd/pipeline"
)

// maxPage bounds ?page= so that (page-1)*limit never overflows anything.
const maxPage = 1_000_000

// query reads a request's query parameters, collecting every bad one, so
// that one 400 lists them all.
type query struct {
	c   *fiber.Ctx
	bad []pipeline.FieldError
}

func (q *query) fail(field, msg string) {
	q.bad = append(q.bad, pipeline.FieldError{Field: field, Message: msg})
}

// intIn reads a whole number in [lo, hi], def when absent.
func (q *query) intIn(name string, def, lo, hi int) int {
	v := q.c.Query(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		q.fail(name, "must be a whole number between "+strconv.Itoa(lo)+" and "+strconv.Itoa(hi))
		return def
	}
	return n
}

// page reads page (1–1,000,000) and limit (1–200).
func (q *query) page() (page, limit int) {
	return q.intIn("page", 1, 1, maxPage), q.intIn("limit", 20, 1, 200)
}

// oneOf reads an optional value that must be one of allowed.
func (q *query) oneOf(name string, allowed ...string) string {
	v := q.c.Query(name)
	if v != "" && !slices.Contains(allowed, v) {
		q.fail(name, "must be one of "+strings.Join(allowed, ", "))
		return ""
	}
	return v
}

// triggerType reads an optional trigger type.
func (q *query) triggerType() string { return q.oneOf("trigger_type", event.TriggerTypes...) }

// text reads an optional free-text filter (an id): printable, at most 200
// bytes.
func (q *query) text(name string) string {
	v := q.c.Query(name)
	if len(v) > 200 || strings.ContainsFunc(v, func(r rune) bool { return r < ' ' || r == 0x7f }) {
		q.fail(name, "must be at most 200 printable characters")
		return ""
	}
	return v
}

// maxRange bounds a stats query's from–to span (the aggregates keep
// minutes for the retention period; a year is far beyond it).
const maxRange = 366 * 24 * time.Hour

// timeRange reads from and to (RFC 3339), each defaulting to the given
// moment; from must be before to and the span at most maxRange.
func (q *query) timeRange(defFrom, defTo time.Time) (from, to time.Time) {
	read := func(name string, def time.Time) (time.Time, bool) {
		v := q.c.Query(name)
		if v == "" {
			return def, true
		}
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil || t.Year() < 1970 || t.Year() > 9999 {
			q.fail(name, "must be an RFC 3339 time, e.g. 2026-11-27T10:00:00Z")
			return def, false
		}
		return t.UTC(), true
	}
	from, okFrom := read("from", defFrom)
	to, okTo := read("to", defTo)
	given := q.c.Query("from") != "" || q.c.Query("to") != ""
	if !given && !from.Before(to) {
		return from, from.Add(time.Millisecond) // the defaults at midnight itself
	}
	if okFrom && okTo {
		switch {
		case !from.Before(to):
			q.fail("to", "must be after from")
		case to.Sub(from) > maxRange:
			q.fail("to", "must be at most 366 days after from")
		}
	}
	return from, to
}

// maxBuckets bounds a time series' length.
const maxBuckets = 1500

// interval reads a time series' interval (1m, 5m or 1h; default 1m) and
// checks that from–to holds at most maxBuckets of it.
func (q *query) interval(from, to time.Time) (string, time.Duration) {
	name := q.oneOf("interval", "1m", "5m", "1h")
	if name == "" {
		name = "1m"
	}
	step := map[string]time.Duration{"1m": time.Minute, "5m": 5 * time.Minute, "1h": time.Hour}[name]
	// Buckets start on multiples of the interval (UTC): count them as
	// the store will.
	start := from.Truncate(step)
	if to.After(from) && (to.Sub(start)+step-1)/step > maxBuckets {
		q.fail("interval", "from–to holds more than "+strconv.Itoa(maxBuckets)+" buckets of "+name+"; use a longer interval or a shorter range")
	}
	return name, step
}

// err is nil, or the 400 listing every bad parameter.
func (q *query) err() error {
	if q.bad == nil {
		return nil
	}
	return &Error{Status: fiber.StatusBadRequest, Code: "validation_failed", Message: "invalid query", Details: q.bad}
}
