package store

import (
	"context"
	"fmt"
)

// TouchHub records that the hub's agent is there now, without what it says
// of itself (HubSeen): the relay calls it when a hub fetches the relay's
// keys, so that `hubrelay key promote` knows every hub learned the next key.
func (s *Store) TouchHub(ctx context.Context, hubName string) error {
	res, err := s.db.ExecContext(ctx, `UPDATE hubs SET last_seen = $1 WHERE name = $2`, s.nowMs(), hubName)
	return affected(res, err, fmt.Sprintf("hub %q", hubName))
}
