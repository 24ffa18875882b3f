-- 0011: several switch nodes over one store (docs/architecture.md §7). Every row a node keeps a
-- live copy of and decides on carries a version: an opaque write stamp, new on every write
-- (never an increment, so a stamp one node wrote can never be mistaken for another's). A
-- group commit writes a unit only if the versions it read are still there, and reports the
-- others as conflicts; the node reloads and decides again.
-- * accounts.version covers the account row and what is decided with it: its holds, the
--   follow-ups (reversed, captured, refunded) of the transactions posted to it, and the daily
--   limit usage of its cards (every change of a card's usage writes the card's account).
-- * cards.version covers the card row (status, PIN and code tries).
-- The usage of one card on one day is read back from the journal (a node reloading a card
-- after another node changed it): journal_card_day makes that an index range.
ALTER TABLE accounts ADD COLUMN version BIGINT NOT NULL DEFAULT 0;
ALTER TABLE cards ADD COLUMN version BIGINT NOT NULL DEFAULT 0;
CREATE INDEX journal_card_day ON journal(card_id, business_day)
    WHERE response_code = '00' AND categories != '';
