package analytics

import (
	"context"
	"crypto/tls"
	"fmt"
	"reflect"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// serverBackend talks to a ClickHouse server through clickhouse-go's native
// protocol (production). Parameters are sent as server-side query parameters.
type serverBackend struct{ conn driver.Conn }

// ServerOptions locate a ClickHouse server.
type ServerOptions struct {
	Addr     string
	Database string
	User     string
	Password string
	TLS      bool
}

func openServer(ctx context.Context, o ServerOptions) (*serverBackend, error) {
	opts := &clickhouse.Options{
		Addr: []string{o.Addr},
		Auth: clickhouse.Auth{Database: "default", Username: o.User, Password: o.Password},
		Settings: clickhouse.Settings{
			"async_insert": 0,
		},
		DialTimeout:     5 * time.Second,
		ConnMaxLifetime: time.Hour,
		MaxOpenConns:    8,
		MaxIdleConns:    4,
	}
	if o.TLS {
		opts.TLS = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	conn, err := clickhouse.Open(opts)
	if err != nil {
		return nil, fmt.Errorf("clickhouse: %w", err)
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := conn.Ping(pctx); err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("clickhouse %s: %w", o.Addr, err)
	}
	return &serverBackend{conn: conn}, nil
}

func withParams(ctx context.Context, p Params) context.Context {
	if len(p) == 0 {
		return ctx
	}
	ps := clickhouse.Parameters{}
	for k, v := range p {
		ps[k] = paramText(v)
	}
	return clickhouse.Context(ctx, clickhouse.WithParameters(ps))
}

func (s *serverBackend) exec(ctx context.Context, q string, p Params) error {
	return s.conn.Exec(withParams(ctx, p), q)
}

func (s *serverBackend) query(ctx context.Context, q string, p Params) ([][]any, error) {
	rows, err := s.conn.Query(withParams(ctx, p), q)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	types := rows.ColumnTypes()
	var out [][]any
	for rows.Next() {
		ptrs := make([]any, len(types))
		for i, t := range types {
			ptrs[i] = reflect.New(t.ScanType()).Interface()
		}
		if err := rows.Scan(ptrs...); err != nil {
			return nil, err
		}
		row := make([]any, len(ptrs))
		for i, p := range ptrs {
			row[i] = reflect.ValueOf(p).Elem().Interface()
		}
		out = append(out, row)
	}
	return out, rows.Err()
}

func (s *serverBackend) insert(ctx context.Context, table string, cols []string, rows [][]any) error {
	if len(rows) == 0 {
		return nil
	}
	if t := DedupToken(ctx); t != "" {
		ctx = clickhouse.Context(ctx, clickhouse.WithSettings(clickhouse.Settings{"insert_deduplication_token": t}))
	}
	if id := queryID(ctx); id != "" {
		ctx = clickhouse.Context(ctx, clickhouse.WithQueryID(id))
	}
	batch, err := s.conn.PrepareBatch(ctx, "INSERT INTO "+table+" ("+joinCols(cols)+")")
	if err != nil {
		return err
	}
	for _, r := range rows {
		if err := batch.Append(r...); err != nil {
			_ = batch.Abort()
			return err
		}
	}
	return batch.Send()
}

func (s *serverBackend) ping(ctx context.Context) error { return s.conn.Ping(ctx) }
func (s *serverBackend) close() error                   { return s.conn.Close() }
