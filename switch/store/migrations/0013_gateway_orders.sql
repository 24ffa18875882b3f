-- 0013: orders of the online gateway (switch/gateway, the SATIM-compatible REST API and the
-- hosted payment page). One row per register.do / registerPreAuth.do; the payment itself is
-- in the journal (payment_id), made by the core as any gRPC payment. No card data here beyond
-- the masked PAN and the expiry the merchant's status calls return.
-- Plain portable SQL: PostgreSQL applies the same file (INTEGER -> BIGINT, REAL -> DOUBLE).
CREATE TABLE gateway_orders (
    order_id        TEXT    PRIMARY KEY,          -- random (mdOrder), never a sequence
    merchant_id     TEXT    NOT NULL,
    order_number    TEXT    NOT NULL,             -- the merchant's, unique per merchant
    kind            TEXT    NOT NULL,             -- sale | preauth
    amount          INTEGER NOT NULL,             -- minor units (centimes)
    currency        INTEGER NOT NULL,             -- ISO 4217 numeric (12)
    return_url      TEXT    NOT NULL,
    fail_url        TEXT    NOT NULL DEFAULT '',
    description     TEXT    NOT NULL DEFAULT '',
    language        TEXT    NOT NULL,             -- FR | AR | EN
    json_params     TEXT    NOT NULL DEFAULT '{}',-- the merchant's jsonParams (udf1..udf5)
    status          INTEGER NOT NULL,             -- OrderStatus: 0 1 2 3 4 6
    tries           INTEGER NOT NULL DEFAULT 0,   -- payment attempts on the hosted page
    created_at      REAL    NOT NULL,
    expires_at      REAL    NOT NULL,             -- end of the payment session
    updated_at      REAL    NOT NULL,
    payment_id      TEXT    NOT NULL DEFAULT '',  -- the journal's sale / pre-authorization
    masked_pan      TEXT    NOT NULL DEFAULT '',
    expiration      TEXT    NOT NULL DEFAULT '',  -- YYYYMM, as SATIM answers it
    response_code   TEXT    NOT NULL DEFAULT '',  -- ISO 8583 field 39 of the last decision
    action_code     INTEGER NOT NULL DEFAULT -1,
    approval_code   TEXT    NOT NULL DEFAULT '',
    deposit_amount  INTEGER NOT NULL DEFAULT 0,
    refunded_amount INTEGER NOT NULL DEFAULT 0,
    ops             INTEGER NOT NULL DEFAULT 0    -- follow-up operations (idempotency keys)
);
CREATE UNIQUE INDEX gateway_orders_number ON gateway_orders(merchant_id, order_number);
