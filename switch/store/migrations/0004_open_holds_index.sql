-- 0004: find the open pre-authorization holds (oldest first) without scanning every hold ever
-- placed: the periodic expiry (switch/core/holds.py) releases those older than their
-- product's validity. A hold's status is now open | captured | released | expired (released
-- by a reversal or void, expired by the switch after the validity period).
CREATE INDEX holds_open ON holds(txn_id) WHERE status = 'open';
