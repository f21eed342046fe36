package store

import (
	"context"
	"database/sql"
	"fmt"
)

// HubLearnedKeys records that the hub fetched the relay's keys through the
// tunnel now (Hub.KeysLearned), so that `hubrelay key promote` knows every
// hub has learned the next key. It counts as being seen, too.
func (s *Store) HubLearnedKeys(ctx context.Context, hubName string) error {
	now := s.nowMs()
	res, err := s.db.ExecContext(ctx, `UPDATE hubs SET last_seen = $1, keys_learned = $1 WHERE name = $2`, now, hubName)
	return affected(res, err, fmt.Sprintf("hub %q", hubName))
}

// ReplaceHubKey makes key the hub's key, as its agent asked through the
// tunnel, and bumps the revision (a running relay replaces its peer). The
// key it had is remembered as the config's, when none is yet: the config's
// [[hub]] list, imported at every start, still names that one, and must
// not bring it back (ImportHubs). ErrExists when key is another hub's.
func (s *Store) ReplaceHubKey(ctx context.Context, hubName, key string) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		var other string
		err := tx.QueryRowContext(ctx, `SELECT name FROM hubs WHERE name <> $1 AND public_key = $2`, hubName, key).Scan(&other)
		if err == nil {
			return fmt.Errorf("store: hub %q: key is hub %q's: %w", hubName, other, ErrExists)
		}
		if err != sql.ErrNoRows {
			return err
		}
		res, err := tx.ExecContext(ctx, `UPDATE hubs SET config_key = CASE WHEN config_key = '' THEN public_key ELSE config_key END, public_key = $1 WHERE name = $2`, key, hubName)
		if err := affected(res, err, fmt.Sprintf("hub %q", hubName)); err != nil {
			return err
		}
		return bump(ctx, tx)
	})
}
