-- 0012: notifications to merchants (switch/merchant_notify) and the merchant API's order model.
-- Plain portable SQL: PostgreSQL applies the same file (BLOB -> BYTEA).

-- Where and how a merchant is notified. The HMAC secret is stored sealed (AES-256-GCM under a
-- key derived from the state directory's pan.key, switch.merchant_notify.secrets), never in
-- clear: the worker opens it only to sign.
CREATE TABLE merchant_callbacks (
    merchant_id   TEXT PRIMARY KEY,
    url           TEXT    NOT NULL,
    secret_sealed TEXT    NOT NULL,
    enabled       INTEGER NOT NULL DEFAULT 1,
    updated_at    REAL    NOT NULL
);

-- The durable outbox of notifications, written in the same commit as the payment (or gateway
-- order change) it reports. body is the exact JSON that is POSTed (signed at send time), or,
-- for a payment's event, that JSON's values in a compact form (starts 'c1' + U+001F) which
-- switch.merchant_notify.events.json_body turns into the same JSON when it is sent.
-- A worker claims due rows by setting claimed_until (a lease) and claim_token in one write
-- transaction, so two workers never send the same row at the same time.
CREATE TABLE merchant_events (
    event_id        TEXT    PRIMARY KEY,       -- evt_<32 hex>: the merchant's dedupe key
    merchant_id     TEXT    NOT NULL,
    event_type      TEXT    NOT NULL,          -- payment.paid | payment.authorized | ...
    payment_id      TEXT    NOT NULL DEFAULT '', -- the payment's (or gateway order's) public id
    body            TEXT    NOT NULL,
    created_at      REAL    NOT NULL,
    next_attempt_at REAL    NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    status          TEXT    NOT NULL DEFAULT 'pending',  -- pending | delivered | failed
    claimed_until   REAL,
    claim_token     TEXT,
    last_error      TEXT,
    last_status     INTEGER,                   -- the merchant's last HTTP status (0: no answer)
    delivered_at    REAL
);
CREATE INDEX merchant_events_due ON merchant_events(status, next_attempt_at);
CREATE INDEX merchant_events_merchant ON merchant_events(merchant_id, created_at);

-- The merchant API's view of a payment made through it: its public id (not the journal's
-- sequence), the merchant's order reference and metadata. Written with the journal row.
CREATE TABLE payment_orders (
    txn_id          TEXT    PRIMARY KEY,
    payment_id      TEXT    NOT NULL UNIQUE,
    merchant_id     TEXT    NOT NULL,
    order_reference TEXT    NOT NULL DEFAULT '',
    metadata        TEXT    NOT NULL DEFAULT '{}', -- JSON object of string -> string
    created_at      REAL    NOT NULL
);
CREATE INDEX payment_orders_reference ON payment_orders(merchant_id, order_reference);
