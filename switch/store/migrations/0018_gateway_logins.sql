-- 0018: the gateway's login failure counters and trusted logins (switch/gateway/lockout.py),
-- in the store instead of one process's memory: with several nodes every node counts into the
-- same rows (an attacker gets no extra tries from a second node), and a restart forgets
-- nothing. Rows whose window and lock are over are deleted as the gateway goes.
-- Plain portable SQL: PostgreSQL applies the same file (REAL -> DOUBLE PRECISION).
CREATE TABLE gateway_login_failures (
    scope        TEXT    NOT NULL,   -- 'id' (the userName, first 64 characters) | 'address'
    subject      TEXT    NOT NULL,
    first_at     REAL    NOT NULL,   -- start of the counting window
    failures     INTEGER NOT NULL,   -- failures since first_at (0 again once it locked)
    locked_until REAL    NOT NULL,   -- calls refused until then (0: never locked)
    PRIMARY KEY (scope, subject)
);
CREATE TABLE gateway_login_trust (
    merchant_id TEXT NOT NULL,
    address     TEXT NOT NULL,
    last_at     REAL NOT NULL,       -- the last successful login from that address
    PRIMARY KEY (merchant_id, address)
);
