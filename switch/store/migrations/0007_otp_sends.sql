-- 0007: every one-time code sent for a merchant (StartVerification), written in the same
-- commit as the code and its SMS, so the rate limits per card and per merchant
-- (switch/core/otp_rate.py, [verification] in the product configuration) count SMS really
-- sent, restarts included. Idempotent replays send nothing and add no row.
CREATE TABLE otp_sends (
    card_id     INTEGER NOT NULL,
    merchant_id TEXT    NOT NULL,
    created_at  REAL    NOT NULL
);
CREATE INDEX otp_sends_card ON otp_sends(card_id, created_at);
CREATE INDEX otp_sends_merchant ON otp_sends(merchant_id, created_at);
