-- 0016: per-node credit rows of the internal (GL) and settlement accounts (docs/architecture.md
-- §7). Every unit credits the same few such accounts; on PostgreSQL a batch that updated their
-- rows held those row locks until its COMMIT, so two nodes' commits took turns on them
-- (measured: half of a 2-process run's writer time waiting on a transaction lock). Each node
-- now adds its credits to a row of its own here (shard: a number the node holds for as long as
-- it runs); an account's balance is its row's balance plus the sum of its shard rows, and the
-- shards are folded into the account row when a node closes or before raw SQL reads. Nothing
-- is decided on these accounts, so a sum read at any time is as right as the row was.
-- SQLite writes one batch at a time and keeps adding to the account row: the table stays empty.
CREATE TABLE account_shards (
    account_id BIGINT NOT NULL,
    shard INTEGER NOT NULL,
    balance BIGINT NOT NULL DEFAULT 0,
    held BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (account_id, shard)
);
