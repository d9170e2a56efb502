package analytics

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Params are the values of a query's {name:Type} parameters. Values are
// string, int, int64, []string, []int64 or time.Time.
type Params map[string]any

// backend is what one SQL text needs of a ClickHouse connection. Queries use
// ClickHouse's server-side parameter syntax {name:Type}; results come back as
// rows of plain values read with asString/asInt/asFloat, so both backends
// share every statement.
type backend interface {
	exec(ctx context.Context, q string, p Params) error
	query(ctx context.Context, q string, p Params) ([][]any, error)
	insert(ctx context.Context, table string, cols []string, rows [][]any) error
	ping(ctx context.Context) error
	close() error
}

var paramRE = regexp.MustCompile(`\{([A-Za-z_][A-Za-z0-9_]*):([A-Za-z0-9_(), ]+)\}`)

// bindParams substitutes parameters as typed literals for a backend without
// server-side parameters (chDB's plain query call). Every value is quoted and
// cast, so a value can never become SQL.
func bindParams(q string, p Params) (string, error) {
	var missing []string
	out := paramRE.ReplaceAllStringFunc(q, func(m string) string {
		sub := paramRE.FindStringSubmatch(m)
		v, ok := p[sub[1]]
		if !ok {
			missing = append(missing, sub[1])
			return m
		}
		return "CAST(" + sqlLiteral(v) + " AS " + sub[2] + ")"
	})
	if len(missing) > 0 {
		return "", fmt.Errorf("query parameters not given: %s", strings.Join(missing, ", "))
	}
	return out, nil
}

func quoteString(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`, "\x00", `\0`).Replace(s) + "'"
}

func sqlLiteral(v any) string {
	switch x := v.(type) {
	case string:
		return quoteString(x)
	case int:
		return strconv.Itoa(x)
	case int64:
		return strconv.FormatInt(x, 10)
	case time.Time:
		return quoteString(chTime(x))
	case []string:
		q := make([]string, len(x))
		for i, s := range x {
			q[i] = quoteString(s)
		}
		return "[" + strings.Join(q, ",") + "]"
	case []int64:
		q := make([]string, len(x))
		for i, n := range x {
			q[i] = strconv.FormatInt(n, 10)
		}
		return "[" + strings.Join(q, ",") + "]"
	}
	return quoteString(fmt.Sprint(v))
}

// paramText is a parameter's value in the text form clickhouse-go sends for
// server-side parameters.
func paramText(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case time.Time:
		return chTime(x)
	case []string, []int64:
		return sqlLiteral(x)
	}
	return fmt.Sprint(v)
}

// chTime formats a time as ClickHouse's DateTime64(3) text, in UTC.
func chTime(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05.000") }

func encodeCompactRow(r []any) ([]byte, error) {
	vals := make([]any, len(r))
	for i, v := range r {
		if t, ok := v.(time.Time); ok {
			vals[i] = chTime(t)
			continue
		}
		vals[i] = v
	}
	return json.Marshal(vals)
}

func asString(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case *string:
		if x != nil {
			return *x
		}
		return ""
	case nil:
		return ""
	}
	return fmt.Sprint(v)
}

func asInt(v any) int64 {
	switch x := v.(type) {
	case json.Number:
		if n, err := x.Int64(); err == nil {
			return n
		}
		f, _ := x.Float64()
		return int64(f)
	case int64:
		return x
	case int32:
		return int64(x)
	case int16:
		return int64(x)
	case int8:
		return int64(x)
	case int:
		return int64(x)
	case uint64:
		return int64(x)
	case uint32:
		return int64(x)
	case uint16:
		return int64(x)
	case uint8:
		return int64(x)
	case float64:
		return int64(x)
	case string:
		n, _ := strconv.ParseInt(x, 10, 64)
		return n
	}
	return 0
}

func asFloat(v any) float64 {
	switch x := v.(type) {
	case json.Number:
		f, _ := x.Float64()
		return f
	case float64:
		return x
	case float32:
		return float64(x)
	case string:
		f, _ := strconv.ParseFloat(x, 64)
		return f
	}
	return float64(asInt(v))
}

func msTime(ms int64) time.Time {
	if ms <= 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms).UTC()
}

// asInts reads an array column of integers as the backend returns it:
// []any from chDB's JSON, []T (the column's own type) from clickhouse-go.
func asInts(v any) []int64 { return asNumbers(v, asInt) }

// asFloats reads an array column of numbers as asInts does.
func asFloats(v any) []float64 { return asNumbers(v, asFloat) }

// asNumbers reads an array column of numbers as N, its elements read by
// fromAny from chDB's JSON.
func asNumbers[N int64 | float64](v any, fromAny func(any) N) []N {
	switch x := v.(type) {
	case []any:
		return mapSlice(x, fromAny)
	case []int64:
		return mapSlice(x, func(e int64) N { return N(e) })
	case []uint64:
		return mapSlice(x, func(e uint64) N { return N(e) })
	case []int32:
		return mapSlice(x, func(e int32) N { return N(e) })
	case []uint32:
		return mapSlice(x, func(e uint32) N { return N(e) })
	case []float64:
		return mapSlice(x, func(e float64) N { return N(e) })
	case []float32:
		return mapSlice(x, func(e float32) N { return N(e) })
	}
	return nil
}

func mapSlice[E, N any](in []E, f func(E) N) []N {
	out := make([]N, len(in))
	for i, e := range in {
		out[i] = f(e)
	}
	return out
}
