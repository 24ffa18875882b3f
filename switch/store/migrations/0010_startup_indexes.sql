-- 0010: a start-up that reads only what it needs, whatever the size of the history.
-- * Today's limit usage (Pipeline.rebuild_limits -> limit_usage): the approved debits of one
--   business day. 0002 dropped journal_day, so that read scanned the whole journal; this
--   partial index holds only the rows the read wants (approved, with limit categories).
-- * The idempotency keys of the last two days (Pipeline.load -> recent_idempotency_keys):
--   without an index on created_at, every key ever answered was read.
CREATE INDEX journal_day_debits ON journal(business_day)
    WHERE response_code = '00' AND categories != '';
CREATE INDEX idempotency_created ON idempotency(created_at);
