-- 0006: a journal row can record a *refused* request: one the caller was answered with an
-- error rather than a transaction (a merchant's refund above what is refundable, a capture of
-- a captured hold, a 96 "could not decide, retry"). The operator keeps it; a merchant never
-- sees it (ListPayments / GetPayment), and no idempotency key is spent on it.
ALTER TABLE journal ADD COLUMN refused INTEGER NOT NULL DEFAULT 0;
DROP INDEX journal_merchant;
CREATE INDEX journal_merchant ON journal(merchant_id, txn_id) WHERE merchant_id != '' AND refused = 0;
