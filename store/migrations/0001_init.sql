-- The first schema: accounts, hubs, grants, app tokens, sessions, audit.
-- Times are Unix milliseconds, 0 for none; flags are INTEGER 0/1; hashes
-- are TEXT (a PHC string for passwords, hex SHA-256 for tokens and
-- sessions), so SQLite and PostgreSQL read the same columns the same way.

CREATE TABLE users (
	id            {{id}},
	name          TEXT NOT NULL UNIQUE,
	password_hash TEXT NOT NULL,
	totp_secret   TEXT NOT NULL DEFAULT '',
	created       BIGINT NOT NULL,
	disabled      INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE hubs (
	id            {{id}},
	name          TEXT NOT NULL UNIQUE,
	owner_id      BIGINT REFERENCES users (id) ON DELETE SET NULL,
	public_key    TEXT NOT NULL UNIQUE,
	tunnel_ip     TEXT NOT NULL UNIQUE,
	disabled      INTEGER NOT NULL DEFAULT 0,
	created       BIGINT NOT NULL,
	last_seen     BIGINT NOT NULL DEFAULT 0,
	agent_version TEXT NOT NULL DEFAULT ''
);

-- ports is a bit set: 1 webui, 2 xmlrpc, 4 script (store.Ports).
CREATE TABLE grants (
	user_id  BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
	hub_id   BIGINT NOT NULL REFERENCES hubs (id) ON DELETE CASCADE,
	ports    INTEGER NOT NULL,
	until_at BIGINT NOT NULL DEFAULT 0,
	created  BIGINT NOT NULL,
	PRIMARY KEY (user_id, hub_id)
);
CREATE INDEX grants_hub ON grants (hub_id);

CREATE TABLE tokens (
	id        {{id}},
	hub_id    BIGINT NOT NULL REFERENCES hubs (id) ON DELETE CASCADE,
	label     TEXT NOT NULL DEFAULT '',
	hash      TEXT NOT NULL UNIQUE,
	ports     INTEGER NOT NULL,
	created   BIGINT NOT NULL,
	expires   BIGINT NOT NULL DEFAULT 0,
	last_used BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX tokens_hub ON tokens (hub_id);

CREATE TABLE sessions (
	id      {{id}},
	hash    TEXT NOT NULL UNIQUE,
	user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
	created BIGINT NOT NULL,
	expires BIGINT NOT NULL,
	revoked BIGINT NOT NULL DEFAULT 0,
	source  TEXT NOT NULL DEFAULT ''
);
CREATE INDEX sessions_user ON sessions (user_id);

-- audit names users and hubs by name, not by id, so that the record
-- outlives them.
CREATE TABLE audit (
	id         {{id}},
	at         BIGINT NOT NULL,
	kind       TEXT NOT NULL,
	user_name  TEXT NOT NULL DEFAULT '',
	token_id   BIGINT NOT NULL DEFAULT 0,
	hub        TEXT NOT NULL DEFAULT '',
	port       INTEGER NOT NULL DEFAULT 0,
	source     TEXT NOT NULL DEFAULT '',
	bytes_up   BIGINT NOT NULL DEFAULT 0,
	bytes_down BIGINT NOT NULL DEFAULT 0,
	outcome    TEXT NOT NULL DEFAULT '',
	detail     TEXT NOT NULL DEFAULT ''
);
CREATE INDEX audit_at ON audit (at);
CREATE INDEX audit_hub ON audit (hub, at);
CREATE INDEX audit_user ON audit (user_name, at);
