-- 0017: the store-and-forward queue in the shared store (docs/architecture.md §7). Messages
-- owed to remote issuers -- reversals (0420, repeated as 0421) and completion advices (0220 /
-- 0221) -- one row each, delivered oldest first (id order) and deleted only when the issuer
-- acknowledges them. The message's fields are sealed (encrypt-then-MAC under a key derived
-- from pan.key, switch.iso8583.saf): no PAN in clear.
-- A node delivers an issuer's queue only while it holds the lease 'issuer:<name>' and decides
-- a follow-up of a remote original only while it holds 'original:<txn id>' (saf_leases); a
-- lease of a node that died expires (expires_at, the database's clock) and is taken over.
-- On PostgreSQL every node uses these tables. On SQLite they stay empty: the queue there is
-- the file state_dir/saf.db (same tables), which the --workers processes of the machine share.
CREATE TABLE saf (
    id INTEGER PRIMARY KEY,
    issuer TEXT NOT NULL,
    created_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_attempt REAL,
    mti TEXT NOT NULL,
    sealed BLOB NOT NULL
);
CREATE INDEX saf_issuer ON saf (issuer, id);

CREATE TABLE saf_leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_at REAL NOT NULL
);
