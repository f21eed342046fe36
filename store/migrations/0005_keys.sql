-- The key the relay's config ([[hub]] public_key) names for a hub whose
-- agent has since replaced its key through the tunnel ('' for none): the
-- config's key then no longer overrides the store's when the config's hubs
-- are imported (at every relay start and hubrelay command). A config that
-- names yet another key still wins, and clears this.
ALTER TABLE hubs ADD COLUMN config_key TEXT NOT NULL DEFAULT '';

-- When the hub last fetched the relay's keys through the tunnel (ms, 0:
-- never): hubrelay key promote waits until every hub has since the next
-- key was made. last_seen cannot tell: a hub that only went away, or
-- connected and failed to ask, is seen too.
ALTER TABLE hubs ADD COLUMN keys_learned BIGINT NOT NULL DEFAULT 0;
