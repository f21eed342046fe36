-- What the relay needs to act on a change at once, and to show hubs and
-- sessions in full.
--
-- revision counts the changes of who may reach what (grants, revokes,
-- sessions and tokens ended, accounts and hubs disabled or removed); a
-- running relay polls it and re-checks the access it has let through.
CREATE TABLE revision (
	one INTEGER NOT NULL PRIMARY KEY,
	n   BIGINT NOT NULL
);
INSERT INTO revision (one, n) VALUES (1, 0);

-- A token made by a user reaches no more than that user may; NULL: made by
-- the operator, bounded by its own ports only.
ALTER TABLE tokens ADD COLUMN user_id BIGINT REFERENCES users (id) ON DELETE CASCADE;

-- What the hub's agent said of itself at its last connect.
ALTER TABLE hubs ADD COLUMN model TEXT NOT NULL DEFAULT '';
ALTER TABLE hubs ADD COLUMN firmware TEXT NOT NULL DEFAULT '';

-- A session record's end and request count (its start is at).
ALTER TABLE audit ADD COLUMN ended BIGINT NOT NULL DEFAULT 0;
ALTER TABLE audit ADD COLUMN requests INTEGER NOT NULL DEFAULT 0;
