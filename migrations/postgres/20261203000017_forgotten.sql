-- A forgotten customer's ledger entries keep only the address hash, marked
-- permanent_skip = 'Forgotten on request' (so a later import of the address is not sent),
-- and this flag while the permanent deletion in Mailchimp is still to be made (Mailchimp was
-- unreachable): the destination's next run makes it first.
ALTER TABLE export_ledger ADD COLUMN erase_pending BIGINT NOT NULL DEFAULT 0;
