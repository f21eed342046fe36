-- The key the relay's config ([[hub]] public_key) names for a hub whose
-- agent has since replaced its key through the tunnel ('' for none): the
-- config's key then no longer overrides the store's when the config's hubs
-- are imported (at every relay start and hubrelay command). A config that
-- names yet another key still wins, and clears this.
ALTER TABLE hubs ADD COLUMN config_key TEXT NOT NULL DEFAULT '';
