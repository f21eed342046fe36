package store

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"
	"path"
	"strconv"
	"strings"
)

// The schema's history: migrations/NNNN_what.sql, numbered from 1 without
// gaps, applied in order. A migration, once released, is never edited: a
// change is a new file. Statements end with ';' at the end of a line;
// {{id}} is the dialect's auto-numbered primary key.
//
//go:embed migrations/*.sql
var migrationFS embed.FS

var migrations = mustMigrations(migrationFS)

type migration struct {
	version int
	name    string
	sql     string
}

func mustMigrations(fsys fs.FS) []migration {
	ms, err := loadMigrations(fsys)
	if err != nil {
		panic(err)
	}
	return ms
}

func loadMigrations(fsys fs.FS) ([]migration, error) {
	names, err := fs.Glob(fsys, "migrations/*.sql")
	if err != nil {
		return nil, err
	}
	var ms []migration
	for i, name := range names { // Glob sorts
		base := path.Base(name)
		num, _, _ := strings.Cut(base, "_")
		v, err := strconv.Atoi(num)
		if err != nil || v != i+1 {
			return nil, fmt.Errorf("store: migration %s: want number %04d", base, i+1)
		}
		b, err := fs.ReadFile(fsys, name)
		if err != nil {
			return nil, err
		}
		ms = append(ms, migration{version: v, name: base, sql: string(b)})
	}
	return ms, nil
}

// statements splits a migration into its statements, for the dialect d.
func (d dialect) statements(src string) []string {
	src = strings.ReplaceAll(src, "{{id}}", d.id)
	var out []string
	var cur strings.Builder
	for _, line := range strings.Split(src, "\n") {
		t := strings.TrimSpace(line)
		if t == "" || strings.HasPrefix(t, "--") {
			continue
		}
		cur.WriteString(line)
		cur.WriteByte('\n')
		if strings.HasSuffix(t, ";") {
			out = append(out, strings.TrimSpace(cur.String()))
			cur.Reset()
		}
	}
	if s := strings.TrimSpace(cur.String()); s != "" {
		out = append(out, s)
	}
	return out
}

// Version is the schema version of the open database.
func (s *Store) Version(ctx context.Context) (int, error) {
	return schemaVersion(ctx, s.db)
}

// querier is a *sql.DB or a *sql.Tx.
type querier interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
	QueryContext(context.Context, string, ...any) (*sql.Rows, error)
}

func schemaVersion(ctx context.Context, q querier) (int, error) {
	var v sql.NullInt64
	if err := q.QueryRowContext(ctx, `SELECT MAX(version) FROM schema_version`).Scan(&v); err != nil {
		return 0, fmt.Errorf("store: schema version: %w", err)
	}
	return int(v.Int64), nil
}

// migrate brings the database to the last of ms, each migration in its own
// transaction together with its schema_version row, so a crash leaves the
// database at one version or the next, never between. A database newer
// than ms is refused: this binary would not know its tables.
func (s *Store) migrate(ctx context.Context, ms []migration) error {
	if _, err := s.db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_version (
		version INTEGER NOT NULL PRIMARY KEY,
		name    TEXT NOT NULL,
		applied BIGINT NOT NULL)`); err != nil {
		return fmt.Errorf("store: schema_version: %w", err)
	}
	have, err := s.Version(ctx)
	if err != nil {
		return err
	}
	if have > len(ms) {
		return fmt.Errorf("store: the database is at schema version %d, but this hubrelay knows versions up to %d: run a newer hubrelay (or restore the backup made before the upgrade)", have, len(ms))
	}
	for _, m := range ms[have:] {
		err := s.tx(ctx, func(tx *sql.Tx) error {
			if s.d.lockMigrations != "" {
				if _, err := tx.ExecContext(ctx, s.d.lockMigrations); err != nil {
					return err
				}
			}
			// Another relay may have applied it meanwhile.
			v, err := schemaVersion(ctx, tx)
			if err != nil || v >= m.version {
				return err
			}
			for _, stmt := range s.d.statements(m.sql) {
				if _, err := tx.ExecContext(ctx, stmt); err != nil {
					return fmt.Errorf("%w\n%s", err, stmt)
				}
			}
			_, err = tx.ExecContext(ctx, `INSERT INTO schema_version (version, name, applied) VALUES ($1, $2, $3)`, m.version, m.name, s.nowMs())
			return err
		})
		if err != nil {
			return fmt.Errorf("store: migration %s: %w", m.name, err)
		}
		s.logf("applied migration %s", m.name)
	}
	return nil
}
