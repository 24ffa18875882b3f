-- 0005: loading an issuer's card base (switch import cards|accounts, switch/cardbase/).
-- One row per file being imported, keyed by what is imported and the SHA-256 of the file's
-- content. It is updated in the same transaction as each batch of records, so after a crash
-- a rerun of the same command resumes at the first record not committed: every record is
-- applied exactly once.
CREATE TABLE import_progress (
    kind        TEXT    NOT NULL,             -- 'cards' | 'accounts', '+update' with --update
    file_sha256 TEXT    NOT NULL,
    file_name   TEXT    NOT NULL,             -- as given on the command line (information only)
    next_offset INTEGER NOT NULL,             -- byte offset of the first record not committed
    next_line   INTEGER NOT NULL,             -- physical lines before that offset
    loaded      INTEGER NOT NULL DEFAULT 0,
    updated     INTEGER NOT NULL DEFAULT 0,
    rejected    INTEGER NOT NULL DEFAULT 0,
    done        INTEGER NOT NULL DEFAULT 0,   -- 1 once the whole file was read
    started_at  REAL    NOT NULL,
    updated_at  REAL    NOT NULL,
    PRIMARY KEY (kind, file_sha256)
);
-- The cardholder's name as the card management system gives it (embossed name). The core
-- does not read it; the account keeps the holder and the SMS number the alerts go to.
ALTER TABLE cards ADD COLUMN holder TEXT NOT NULL DEFAULT '';
