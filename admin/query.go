package admin

import (
	"slices"
	"strconv"
	"strings"

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

// err is nil, or the 400 listing every bad parameter.
func (q *query) err() error {
	if q.bad == nil {
		return nil
	}
	return &Error{Status: fiber.StatusBadRequest, Code: "validation_failed", Message: "invalid query", Details: q.bad}
}
