-- 0003: find the bill a payment paid (to reopen it when the payment is reversed or voided).
CREATE INDEX bills_paid_txn ON bills(paid_txn) WHERE paid_txn IS NOT NULL;
