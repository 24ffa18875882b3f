-- 0001: accounts, cards, terminals, merchants, billers, BIN routes, journal, postings,
-- holds, idempotency, SMS alert outbox. Portable SQL (INTEGER/TEXT/BLOB/REAL types, no
-- SQLite-only constructs) so the PostgreSQL backend can apply the same file with the
-- obvious type mapping (BLOB -> bytea, REAL -> double precision).

CREATE TABLE accounts (
    account_id      INTEGER PRIMARY KEY,
    number          TEXT    NOT NULL UNIQUE,   -- CCP account number, or GL code for internal accounts
    kind            TEXT    NOT NULL,          -- 'ccp' (customer) | 'gl' (internal)
    holder          TEXT    NOT NULL DEFAULT '',
    phone           TEXT    NOT NULL DEFAULT '',
    currency        INTEGER NOT NULL,
    balance         INTEGER NOT NULL,          -- minor units (ledger balance)
    held            INTEGER NOT NULL DEFAULT 0,-- open pre-authorization holds
    may_go_negative INTEGER NOT NULL DEFAULT 0 -- GL accounts only
);

CREATE TABLE cards (
    card_id      INTEGER PRIMARY KEY,
    pan_hash     BLOB    NOT NULL UNIQUE,      -- HMAC-SHA256(PAN) under the store's PAN key
    pan_first6   TEXT    NOT NULL,
    pan_last4    TEXT    NOT NULL,
    account_id   INTEGER NOT NULL REFERENCES accounts(account_id),
    product      TEXT    NOT NULL,
    expiry       TEXT    NOT NULL,             -- YYMM
    service_code TEXT    NOT NULL,
    pan_sequence TEXT    NOT NULL DEFAULT '00',
    pvki         INTEGER NOT NULL DEFAULT 1,
    pvv          TEXT    NOT NULL DEFAULT '',
    ibm_offset   TEXT    NOT NULL DEFAULT '',
    pvk          TEXT    NOT NULL DEFAULT '',  -- key cryptograms under the LMK, never clear
    cvk          TEXT    NOT NULL DEFAULT '',
    mk_ac        TEXT    NOT NULL DEFAULT '',
    status       TEXT    NOT NULL,             -- ordered|delivered|active|blocked|lost|stolen|expired
    pin_tries    INTEGER NOT NULL DEFAULT 0,   -- consecutive wrong PINs
    otp_tries    INTEGER NOT NULL DEFAULT 0,   -- consecutive wrong e-commerce codes
    activated_at REAL
);

CREATE TABLE terminals (
    terminal_id      TEXT PRIMARY KEY,
    kind             TEXT    NOT NULL,         -- 'atm' | 'pos' | 'counter' | 'virtual'
    acquirer_id      TEXT    NOT NULL,
    own              INTEGER NOT NULL,         -- 1: our own ATM (fee_own_atm), 0: another bank's
    location         TEXT    NOT NULL DEFAULT '',
    tpk              TEXT    NOT NULL DEFAULT '',
    tak              TEXT    NOT NULL DEFAULT '',
    pin_block_format TEXT    NOT NULL DEFAULT '01',
    settlement_account_id INTEGER NOT NULL REFERENCES accounts(account_id)
);

CREATE TABLE merchants (
    merchant_id           TEXT PRIMARY KEY,
    name                  TEXT    NOT NULL,
    mcc                   TEXT    NOT NULL,
    city                  TEXT    NOT NULL DEFAULT '',
    settlement_account_id INTEGER NOT NULL REFERENCES accounts(account_id),
    api_key_hash          BLOB    NOT NULL,    -- SHA-256 of the API key
    terminal_id           TEXT    NOT NULL DEFAULT ''
);

CREATE TABLE billers (
    biller_id             TEXT PRIMARY KEY,
    name                  TEXT    NOT NULL,
    category              TEXT    NOT NULL,    -- electricity_gas | water | telephone
    settlement_account_id INTEGER NOT NULL REFERENCES accounts(account_id),
    reference_pattern     TEXT    NOT NULL     -- regular expression a bill reference must match
);

CREATE TABLE bills (
    biller_id  TEXT    NOT NULL REFERENCES billers(biller_id),
    reference  TEXT    NOT NULL,
    amount_due INTEGER NOT NULL,
    paid_txn   TEXT,
    PRIMARY KEY (biller_id, reference)
);

CREATE TABLE bin_routes (
    prefix      TEXT PRIMARY KEY,
    destination TEXT NOT NULL                  -- 'onus' or the name of a remote issuer
);

-- Immutable journal: one row per authorization-shaped request, approved or declined.
CREATE TABLE journal (
    txn_id          TEXT    PRIMARY KEY,       -- 12 digits, allocated in increasing order
    created_at      REAL    NOT NULL,
    business_day    INTEGER NOT NULL,
    txn_type        TEXT    NOT NULL,
    channel         TEXT    NOT NULL,
    response_code   TEXT    NOT NULL,
    auth_code       TEXT,
    card_id         INTEGER,
    account_id      INTEGER,
    masked_pan      TEXT    NOT NULL DEFAULT '',
    amount          INTEGER NOT NULL,          -- principal (what the cardholder asked for)
    fee             INTEGER NOT NULL DEFAULT 0,
    currency        INTEGER NOT NULL,
    categories      TEXT    NOT NULL DEFAULT '',  -- limit categories consumed, e.g. '1,3'
    acquirer_id     TEXT    NOT NULL DEFAULT '',
    terminal_id     TEXT    NOT NULL DEFAULT '',
    stan            TEXT    NOT NULL DEFAULT '',
    transmission    TEXT    NOT NULL DEFAULT '',
    rrn             TEXT    NOT NULL DEFAULT '',
    merchant_id     TEXT    NOT NULL DEFAULT '',
    original_txn_id TEXT,
    counter_account_id INTEGER,                -- the account credited/debited opposite the card
    route           TEXT    NOT NULL DEFAULT 'onus',
    message         TEXT    NOT NULL DEFAULT ''
) WITHOUT ROWID;
CREATE INDEX journal_original ON journal(original_txn_id) WHERE original_txn_id IS NOT NULL;
CREATE INDEX journal_day ON journal(business_day);
CREATE INDEX journal_merchant ON journal(merchant_id, txn_id) WHERE merchant_id != '';

-- Double-entry postings: the amounts of one txn_id sum to zero.
CREATE TABLE postings (
    txn_id     TEXT    NOT NULL,
    leg        INTEGER NOT NULL,              -- 0, 1, 2... within the transaction
    account_id INTEGER NOT NULL REFERENCES accounts(account_id),
    amount     INTEGER NOT NULL,              -- signed: negative debits, positive credits
    PRIMARY KEY (txn_id, leg)
) WITHOUT ROWID;

CREATE TABLE holds (
    txn_id     TEXT PRIMARY KEY,               -- the pre-authorization that placed it
    account_id INTEGER NOT NULL REFERENCES accounts(account_id),
    amount     INTEGER NOT NULL,
    remaining  INTEGER NOT NULL,
    status     TEXT    NOT NULL                -- open | captured | released
);

CREATE TABLE idempotency (
    key         TEXT PRIMARY KEY,              -- iso:<acq>:<term>:<stan>:<date> | api:<merchant>:<key>
    fingerprint TEXT NOT NULL,                 -- digest of the request, to tell replays from clashes
    txn_id      TEXT NOT NULL,
    result      TEXT NOT NULL,                 -- the first answer (JSON)
    created_at  REAL NOT NULL
) WITHOUT ROWID;

CREATE TABLE alerts (
    alert_id        INTEGER PRIMARY KEY,
    msisdn          TEXT    NOT NULL,
    text            TEXT    NOT NULL,
    txn_id          TEXT,
    created_at      REAL    NOT NULL,
    next_attempt_at REAL    NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    status          TEXT    NOT NULL DEFAULT 'pending',  -- pending | sent | parked
    carrier_id      TEXT,
    last_error      TEXT
);
CREATE INDEX alerts_due ON alerts(status, next_attempt_at);

CREATE TABLE otps (
    card_id    INTEGER PRIMARY KEY REFERENCES cards(card_id),
    code_hash  BLOB NOT NULL,
    expires_at REAL NOT NULL
);

CREATE TABLE settings (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
