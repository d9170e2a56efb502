package analytics

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Lease serialises schema changes among replicas that start together
// (package lease: a claim on a single-partition Kafka topic, the first in
// log order wins). Acquire blocks until this replica holds the lease, or
// until ctx ends — the bounded wait. held is done when the lease is lost
// (the others presumed this replica dead) or released; release gives it up.
//
// Why Kafka and not a claim row in a ClickHouse table: ClickHouse has no
// transactions or compare-and-set, and an insert is not visible on every
// replica at once, so two replicas inserting claims together can each read
// back only their own and both go ahead. Every webhookd replica already has
// Kafka, whose log order is the same for every reader. A lease cannot fence
// a statement already sent, so migrations stay idempotent.
type Lease interface {
	Acquire(ctx context.Context) (held context.Context, release func(), err error)
}

// AppliedMigration is a row of schema_migrations.
type AppliedMigration struct {
	Version   int
	Name      string
	Checksum  string
	Breaking  bool
	AppliedAt time.Time
	AppliedBy string
}

// Checksum identifies a migration's statements: a SHA-256 of the statements
// generated for canonical names (database "db", cluster "cluster" when
// clustered) with TTL placeholders. It changes when the code of an applied
// migration is edited (or when a database made single-node is opened with a
// cluster, or the reverse), not with the database name or the retention.
func (m Migration) Checksum(clustered bool) string {
	t := Target{Database: "db", ttlPlaceholders: true}
	if clustered {
		t.Cluster = "cluster"
	}
	h := sha256.New()
	for _, s := range m.Statements(t) {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))
}

// ErrSchemaNewer is returned by Migrate when the database has a breaking
// migration this webhookd does not know.
var ErrSchemaNewer = errors.New("the ClickHouse schema is newer than this webhookd")

// Migrate brings the database to the schema of this webhookd:
//
//  1. It reads schema_migrations (and the tables' TTLs). A recorded
//     migration whose checksum differs from the code's is an error: the
//     code of an applied migration was changed, so the database lacks
//     whatever the change added and nothing would ever apply it — better a
//     refused start, naming the migration, than queries failing later. A
//     recorded version above the highest known (a rollback after a newer
//     release migrated) is a warning, since migrations are additive and the
//     older code runs on the newer schema, unless that migration is marked
//     Breaking: then ErrSchemaNewer.
//  2. With nothing to apply and every TTL as configured it returns: a
//     restart costs two queries and no DDL.
//  3. Otherwise it takes the lease (when the store has one; waiting at most
//     Options.MigrateWait for another replica's turn), reads again — the
//     replica before it may have done everything — and applies each missing
//     migration in order, recording it (version, name, checksum, time,
//     replica) once its statements succeeded; then reconciles TTLs (ALTER
//     TABLE … MODIFY TTL for each table whose retention setting changed).
//
// A database made before versions were recorded (tables, no
// schema_migrations) is adopted: migrations 1 and 2 are idempotent, so they
// run again harmlessly and are recorded.
func (s *Store) Migrate(ctx context.Context) error {
	err := s.migrate(ctx, migrations)
	// The embedded engine's start (and the migration's DDL) touched far more
	// of its library than inserts and queries use: let that go.
	if r, ok := s.b.(interface{ releaseStartupPages() int64 }); ok {
		if n := r.releaseStartupPages(); n > 0 && s.log != nil {
			s.log.Debug("chDB: released library pages used only at start", "mb", n>>20)
		}
	}
	return err
}

// Applied lists the migrations recorded in the database, oldest first.
func (s *Store) Applied(ctx context.Context) ([]AppliedMigration, error) {
	rows, err := s.b.query(ctx, `SELECT version, name, checksum, breaking, toUnixTimestamp64Milli(applied_at), applied_by
		FROM `+s.t("schema_migrations")+` FINAL ORDER BY version`, nil)
	if err != nil {
		return nil, fmt.Errorf("read schema_migrations: %w", err)
	}
	out := make([]AppliedMigration, len(rows))
	for i, r := range rows {
		out[i] = AppliedMigration{Version: int(asInt(r[0])), Name: asString(r[1]), Checksum: asString(r[2]), Breaking: asBool(r[3]),
			AppliedAt: msTime(asInt(r[4])), AppliedBy: asString(r[5])}
	}
	return out, nil
}

func (s *Store) target() Target {
	return Target{Database: s.db, Cluster: s.cluster, Retention: s.retention}
}

// schemaPlan is what Migrate has to do.
type schemaPlan struct {
	bootstrap bool // no schema_migrations yet
	pending   []Migration
	ttl       []ttlChange
}

func (p *schemaPlan) empty() bool { return !p.bootstrap && len(p.pending) == 0 && len(p.ttl) == 0 }

func (s *Store) migrate(ctx context.Context, ms []Migration) error {
	p, err := s.plan(ctx, ms, true)
	if err != nil {
		return err
	}
	if p.empty() {
		return nil
	}
	run, held := ctx, context.Background()
	if s.lease != nil {
		wctx, cancel := context.WithTimeout(ctx, s.migrateWait)
		var release func()
		held, release, err = s.lease.Acquire(wctx)
		cancel()
		if err != nil {
			return fmt.Errorf("schema migration: waited %v for the schema lease (another replica migrating; WEBHOOKD_CLICKHOUSE_MIGRATE_WAIT): %w", s.migrateWait, err)
		}
		defer release()
		// Statements stop when the caller gives up or the lease is lost.
		rctx, stop := context.WithCancelCause(ctx)
		defer stop(nil)
		unhook := context.AfterFunc(held, func() { stop(fmt.Errorf("schema lease lost: %w", context.Cause(held))) })
		defer unhook()
		run = rctx
		// The replica before us may have done it all.
		if p, err = s.plan(run, ms, false); err != nil {
			return err
		}
	}
	return s.apply(run, held, p)
}

// apply does a plan; ctx (which ends with held, for the server to abort a
// statement in flight) and held are checked before each statement.
func (s *Store) apply(ctx, held context.Context, p *schemaPlan) error {
	t := s.target()
	if p.bootstrap {
		for _, stmt := range bootstrap(t) {
			if err := s.b.exec(ctx, stmt, nil); err != nil {
				return fmt.Errorf("schema bootstrap: %w\n%s", err, stmt)
			}
		}
	}
	clustered := s.cluster != ""
	for _, m := range p.pending {
		start := time.Now()
		for i, stmt := range m.Statements(t) {
			for _, c := range []context.Context{held, ctx} {
				if c.Err() != nil {
					// Lease lost or caller gone (chDB does not watch ctx).
					return fmt.Errorf("schema migration %d (%s) stopped: %w", m.Version, m.Name, context.Cause(c))
				}
			}
			if m.Guard != nil {
				tables, err := s.tables(ctx)
				if err != nil {
					return fmt.Errorf("schema migration %d (%s): %w", m.Version, m.Name, err)
				}
				if !m.Guard(i, tables) {
					continue
				}
			}
			if err := s.b.exec(ctx, stmt, nil); err != nil {
				return fmt.Errorf("schema migration %d (%s): %w\n%s", m.Version, m.Name, err, stmt)
			}
		}
		row := []any{uint32(m.Version), m.Name, m.Checksum(clustered), m.Breaking, time.Now().UTC(), s.replica}
		if err := s.b.insert(ctx, s.t("schema_migrations"), []string{"version", "name", "checksum", "breaking", "applied_at", "applied_by"}, [][]any{row}); err != nil {
			// Applied, not recorded: the next start applies it again
			// (idempotent) and records it.
			return fmt.Errorf("schema migration %d (%s) applied but not recorded: %w", m.Version, m.Name, err)
		}
		s.log.Info("schema migration applied", "version", m.Version, "name", m.Name, "took", time.Since(start).Round(time.Millisecond), "replica", s.replica)
	}
	// TTLs as they are now that every migration ran.
	changes := p.ttl
	if len(p.pending) > 0 {
		var err error
		if changes, err = s.ttlChanges(ctx); err != nil {
			return err
		}
	}
	for _, c := range changes {
		stmt := modifyTTL(t, c.table)
		if err := s.b.exec(ctx, stmt, nil); err != nil {
			return fmt.Errorf("change TTL of %s: %w\n%s", c.table, err, stmt)
		}
		s.log.Info("table retention changed", "table", c.table, "from", c.from, "to", c.to)
	}
	return nil
}

// modifyTTL sets a table's TTL to the target's retention. ClickHouse then
// materializes it in the background (a mutation over the table's parts:
// rows past the new TTL go without waiting for merges).
func modifyTTL(t Target, table string) string {
	return `ALTER TABLE ` + t.Table(table) + t.On() + ` MODIFY ` + t.TTL(table)
}

// plan reads the database's state; warn logs what only deserves a warning
// (once per Migrate, not again under the lease).
func (s *Store) plan(ctx context.Context, ms []Migration, warn bool) (*schemaPlan, error) {
	p := &schemaPlan{}
	tables, err := s.tables(ctx)
	if err != nil {
		return nil, err
	}
	applied := map[int]AppliedMigration{}
	if _, ok := tables["schema_migrations"]; !ok {
		p.bootstrap = true
	} else {
		recs, err := s.Applied(ctx)
		if err != nil {
			return nil, err
		}
		for _, r := range recs {
			applied[r.Version] = r
		}
	}
	known := map[int]Migration{}
	highest := 0
	for _, m := range ms {
		known[m.Version] = m
		highest = max(highest, m.Version)
	}
	clustered := s.cluster != ""
	var newer []AppliedMigration
	for _, v := range sortedKeys(applied) {
		r := applied[v]
		m, ok := known[v]
		switch {
		case ok:
			if want := m.Checksum(clustered); r.Checksum != want {
				return nil, fmt.Errorf("schema migration %d (%s) in %s.schema_migrations was applied by %s at %s with checksum %.12s, but this webhookd's is %.12s: "+
					"an applied migration's statements were changed in the code (add a new migration instead), "+
					"or WEBHOOKD_CLICKHOUSE_CLUSTER changed between single-node and cluster since", v, r.Name, s.db, r.AppliedBy, r.AppliedAt.Format(time.RFC3339), r.Checksum, want)
			}
		case v > highest:
			newer = append(newer, r)
		default:
			return nil, fmt.Errorf("schema migration %d (%s) in %s.schema_migrations is not one this webhookd knows (it knows 1–%d)", v, r.Name, s.db, highest)
		}
	}
	for _, r := range newer {
		if r.Breaking {
			return nil, fmt.Errorf("%w: %s.schema_migrations has migration %d (%s, applied by %s at %s), which older versions cannot run with; this webhookd knows up to %d: run a newer webhookd",
				ErrSchemaNewer, s.db, r.Version, r.Name, r.AppliedBy, r.AppliedAt.Format(time.RFC3339), highest)
		}
		if warn {
			s.log.Warn("the ClickHouse schema is newer than this webhookd (a rollback?); its migrations are additive, so it runs on it",
				"version", r.Version, "name", r.Name, "applied_by", r.AppliedBy, "known_up_to", highest)
		}
	}
	for _, m := range ms {
		if _, ok := applied[m.Version]; !ok {
			p.pending = append(p.pending, m)
		}
	}
	sort.Slice(p.pending, func(i, j int) bool { return p.pending[i].Version < p.pending[j].Version })
	p.ttl = s.ttlDiff(tables, warn)
	return p, nil
}

func sortedKeys[V any](m map[int]V) []int {
	ks := make([]int, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Ints(ks)
	return ks
}

// tables maps the database's tables to their engine_full (engine, keys,
// TTL and settings as ClickHouse prints them).
func (s *Store) tables(ctx context.Context) (map[string]string, error) {
	rows, err := s.b.query(ctx, `SELECT name, engine_full FROM system.tables WHERE database = {db:String}`, Params{"db": s.db})
	if err != nil {
		return nil, fmt.Errorf("read the schema: %w", err)
	}
	out := make(map[string]string, len(rows))
	for _, r := range rows {
		out[asString(r[0])] = asString(r[1])
	}
	return out, nil
}

// ttlChange is a table whose TTL differs from the retention setting.
type ttlChange struct {
	table    string
	from, to int // days; from 0: no TTL
}

func (s *Store) ttlChanges(ctx context.Context) ([]ttlChange, error) {
	tables, err := s.tables(ctx)
	if err != nil {
		return nil, err
	}
	return s.ttlDiff(tables, false), nil
}

// ttlDiff compares each existing TTL table's TTL with the retention. A
// table missing is left to the migrations (they create it with the right
// TTL); a TTL not of webhookd's form (changed by hand, e.g. moving parts to
// a cold volume) is left as it is, with a warning.
func (s *Store) ttlDiff(tables map[string]string, warn bool) []ttlChange {
	names := make([]string, 0, len(ttlTables))
	for n := range ttlTables {
		names = append(names, n)
	}
	sort.Strings(names)
	var out []ttlChange
	for _, n := range names {
		ef, ok := tables[n]
		if !ok {
			continue
		}
		spec := ttlTables[n]
		want := s.retention.days(spec.class)
		col, days, ok := parseTTL(ef)
		switch {
		case !ok:
			if warn {
				s.log.Warn("table TTL is not webhookd's (changed by hand?); leaving it as it is", "table", n, "engine", ef, "retention_days", want)
			}
		case col == spec.column && days == want:
		case col == "" || col == spec.column:
			out = append(out, ttlChange{table: n, from: days, to: want})
		default:
			if warn {
				s.log.Warn("table TTL is on another column (changed by hand?); leaving it as it is", "table", n, "column", col, "retention_days", want)
			}
		}
	}
	return out
}

var (
	ttlClauseRE = regexp.MustCompile(` TTL (.*?)(?: SETTINGS .*)?$`)
	// toDateTime(col) + toIntervalDay(30), and (… + toIntervalDay(30)) +
	// toIntervalDay(60) as the first releases wrote the DLQ's.
	ttlExprRE = regexp.MustCompile(`^\(*toDateTime\((\w+)\)((?:\)? \+ toIntervalDay\(\d+\))+)$`)
	ttlDaysRE = regexp.MustCompile(`toIntervalDay\((\d+)\)`)
)

// parseTTL reads a table's TTL from its engine_full: the column and days of
// webhookd's form ("", 0 and ok without a TTL); not ok for any other TTL.
func parseTTL(engineFull string) (column string, days int, ok bool) {
	m := ttlClauseRE.FindStringSubmatch(engineFull)
	if m == nil {
		return "", 0, !strings.Contains(engineFull, " TTL ")
	}
	e := ttlExprRE.FindStringSubmatch(strings.TrimSpace(m[1]))
	if e == nil {
		return "", 0, false
	}
	for _, d := range ttlDaysRE.FindAllStringSubmatch(e[2], -1) {
		n, _ := strconv.Atoi(d[1])
		days += n
	}
	return e[1], days, true
}
