-- Enrollment codes: one-time, expiring codes with which a hub registers
-- its key and gets its name and tunnel address (package enroll).
--
-- The code's secret is not kept: the relay derives it from seed with its
-- private key, so the database alone lets nobody pass for the relay or
-- enroll a hub. id is derived from the secret and names the code on the
-- wire without revealing it.
CREATE TABLE enroll_codes (
	id         TEXT NOT NULL PRIMARY KEY,
	seed       TEXT NOT NULL,
	relay_key  TEXT NOT NULL,
	hub        TEXT NOT NULL,
	owner_id   BIGINT REFERENCES users (id) ON DELETE CASCADE,
	created_by TEXT NOT NULL DEFAULT '',
	created    BIGINT NOT NULL,
	expires    BIGINT NOT NULL,
	used       BIGINT NOT NULL DEFAULT 0,
	used_key   TEXT NOT NULL DEFAULT '',
	used_from  TEXT NOT NULL DEFAULT ''
);
CREATE INDEX enroll_codes_hub ON enroll_codes (hub);
