-- The reminder schedule of managed certificates moves out of the inventory row into a
-- narrow table of its own (issue 14, "with 1,000,000 certificates the due-reminder pass
-- takes < 1 s"). A day's pass moves ~11,000 schedules; as a column of
-- `managed_certificates` each move rewrote the wide row and, on PostgreSQL, wrote an
-- entry into every one of its indexes (the trigram GIN index among them): ~1 s of the
-- pass. Here a move touches a two-column row and two indexes.
--
-- A row exists while a certificate has reminders on (and is neither deleted nor
-- revoked); `remind_at` is the next time anything may be due for it, NULL when nothing
-- is left to send (past its last threshold).
CREATE TABLE managed_reminders (
    managed_id TEXT PRIMARY KEY REFERENCES managed_certificates (id),
    remind_at BIGINT
);
INSERT INTO managed_reminders (managed_id, remind_at)
    SELECT id, remind_at FROM managed_certificates
    WHERE notifications = 1 AND deleted_at IS NULL AND revoked_at IS NULL;
CREATE INDEX managed_reminders_due ON managed_reminders (remind_at) WHERE remind_at IS NOT NULL;
DROP INDEX managed_remind_at;
ALTER TABLE managed_certificates DROP COLUMN remind_at;
