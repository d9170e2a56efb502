package analytics

import (
	"context"
	"fmt"
	"regexp"
)

// Insert deduplication at the sink/store boundary.
//
// The sink consumes the executions and DLQ topics at least once, so a batch
// can reach ClickHouse twice: an insert that failed from the sink's point of
// view (a timeout, a dropped connection) may have been written all the same,
// and the retry repeats it. Two things keep such a retry from doubling rows,
// whatever engine the tables have:
//
//   - every insert carries a deterministic insert_deduplication_token (a hash
//     of the records' topic/partition/offset): a server with insert
//     deduplication on (Replicated tables by default) drops the repeat itself;
//   - before a part of a batch is retried after a failure, the sink asks which
//     of its rows are stored already (StoredKeys) and inserts only the rest.
//     This costs a lookup only after a failure, never on the hot path.

type dedupTokenKey struct{}

var tokenRE = regexp.MustCompile(`^[A-Za-z0-9_.:-]{1,128}$`)

// WithDedupToken returns ctx carrying the insert_deduplication_token for the
// inserts made with it. Tokens are plain text ([A-Za-z0-9_.:-]); others are
// ignored, as they would go into SQL text on chDB.
func WithDedupToken(ctx context.Context, token string) context.Context {
	if !tokenRE.MatchString(token) {
		return ctx
	}
	return context.WithValue(ctx, dedupTokenKey{}, token)
}

// DedupToken is the token WithDedupToken put in ctx, or "".
func DedupToken(ctx context.Context) string {
	t, _ := ctx.Value(dedupTokenKey{}).(string)
	return t
}

// rowKeyExpr is each sink table's row identity as one string: what makes a
// row a repeat of another, the same key StoredKeys answers with.
var rowKeyExpr = map[string]struct{ id, key string }{
	"attempts":   {"attempt_id", "attempt_id"},
	"executions": {"execution_id", "concat(execution_id, ':', toString(seq))"},
	"dlq_items":  {"id", "concat(id, ':', toString(version))"},
}

// StoredKeys returns which of ids (attempt ids; execution ids; DLQ item ids)
// already have rows in table, as row keys: the attempt id, or "id:seq" for
// executions and "id:version" for DLQ items. It reads the table without
// FINAL: a row inserted twice is there twice until a merge.
func (s *Store) StoredKeys(ctx context.Context, table string, ids []string) (map[string]bool, error) {
	k, ok := rowKeyExpr[table]
	if !ok {
		return nil, fmt.Errorf("stored keys: unknown table %q", table)
	}
	out := map[string]bool{}
	if len(ids) == 0 {
		return out, nil
	}
	rows, err := s.b.query(ctx, "SELECT DISTINCT "+k.key+" FROM "+s.t(table)+" WHERE "+k.id+" IN {ids:Array(String)}", Params{"ids": ids})
	if err != nil {
		return nil, fmt.Errorf("stored keys of %s: %w", table, err)
	}
	for _, r := range rows {
		if len(r) > 0 {
			out[fmt.Sprint(r[0])] = true
		}
	}
	return out, nil
}
