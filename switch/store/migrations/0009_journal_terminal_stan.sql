-- 0009: fewer journal indexes on the hot path. 0008 indexed the journal by terminal and by
-- STAN separately; each index whose key is random (not growing with txn_id) costs the group
-- commit a page write per row, and measured (bench_core's withdrawals, best of 4) the five
-- indexes of 0008 took about 17 % of the authorizations per CPU-second, these four about 2 %.
-- One (terminal, STAN) index serves a search by terminal and by terminal + STAN; a STAN alone
-- is read newest first from the journal itself (give a terminal or a time range with it).
DROP INDEX journal_stan;
DROP INDEX journal_terminal;
CREATE INDEX journal_terminal ON journal(terminal_id, stan) WHERE terminal_id != '';
