-- Whether a hub's agent is connected now, as the relay serving it records
-- it for those who ask in another process (hubrelay hub list): since when
-- (ms, 0: offline) and over which transport ('tcp', 'tls', 'udp'; '' when
-- offline). A relay clears both for every hub when it starts: one that
-- crashed left them set. One relay per store: a fleet of relays sharing
-- one store would need a relay id here.
ALTER TABLE hubs ADD COLUMN online_since BIGINT NOT NULL DEFAULT 0;
ALTER TABLE hubs ADD COLUMN transport TEXT NOT NULL DEFAULT '';
