-- 0008: operator tools. The audit trail of every operator action (who, when, what, target,
-- outcome), written in the same commit as the change it records; and the journal indexes the
-- operator's transaction search needs (by card, terminal, STAN, RRN, time). The journal is
-- WITHOUT ROWID keyed by txn_id, so each index ends with txn_id: a page of the newest rows of
-- one card or terminal is read from the index in order, with no sort.
CREATE TABLE operator_audit (
    audit_id    INTEGER PRIMARY KEY,
    created_at  REAL    NOT NULL,
    operator_id TEXT    NOT NULL,  -- as authenticated (or as claimed, on a refused login)
    action      TEXT    NOT NULL,  -- the RPC: SetCardStatus, SearchTransactions...
    target      TEXT    NOT NULL DEFAULT '',  -- card 17 (628058******0017), txn ..., account ...
    outcome     TEXT    NOT NULL,  -- ok | unchanged | refused: <status>: <message>
    detail      TEXT    NOT NULL DEFAULT ''   -- e.g. active -> blocked, the filters, the reason
);
CREATE INDEX operator_audit_time ON operator_audit(created_at);
CREATE INDEX journal_card ON journal(card_id) WHERE card_id IS NOT NULL;
CREATE INDEX journal_terminal ON journal(terminal_id) WHERE terminal_id != '';
CREATE INDEX journal_stan ON journal(stan) WHERE stan != '';
CREATE INDEX journal_rrn ON journal(rrn) WHERE rrn != '';
CREATE INDEX journal_created ON journal(created_at);
