-- A challenge left `processing` by a replica that died is taken over (issue 17).
--
-- processing_since: Unix seconds when the challenge entered `processing` (the start
-- transition sets it), or when a replica last claimed its validation (the takeover sweep,
-- `ra::acme::takeover`, bumps it to the claim's time). A challenge processing for longer
-- than the lease is claimed by one replica, which validates it again. NULL: never
-- processing. Rows already processing when this migration runs get 0, so the first sweep
-- takes them over (their validation may have died with an older binary).
ALTER TABLE acme_challenges ADD COLUMN processing_since BIGINT;
UPDATE acme_challenges SET processing_since = 0 WHERE status = 'processing';
-- The sweep's range scan: only processing challenges are in it, however many finished
-- ones the table holds. Queries must say `status = 'processing'` literally (not as a bound
-- value) for the planners to prove they may use it.
CREATE INDEX acme_challenges_processing ON acme_challenges (processing_since)
    WHERE status = 'processing';
