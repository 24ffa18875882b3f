-- 0002: alerts carry the facts of the posting; the SMS text is rendered when the delivery
-- worker claims the row - not on the authorization's hot path (the text stays '' until then).
ALTER TABLE alerts ADD COLUMN kind TEXT NOT NULL DEFAULT '';
ALTER TABLE alerts ADD COLUMN masked_pan TEXT NOT NULL DEFAULT '';
ALTER TABLE alerts ADD COLUMN amount INTEGER NOT NULL DEFAULT 0;
ALTER TABLE alerts ADD COLUMN currency INTEGER NOT NULL DEFAULT 0;
ALTER TABLE alerts ADD COLUMN place TEXT NOT NULL DEFAULT '';
ALTER TABLE alerts ADD COLUMN available INTEGER NOT NULL DEFAULT 0;
DROP INDEX journal_day;
