-- Which Mailchimp a destination exports to: 'mailchimp' (the real one, or the configured
-- MAILCHIMP_API_BASE_URL / MAILCHIMP_OAUTH_BASE_URL) or 'sandbox' (the built-in one).
ALTER TABLE destinations ADD COLUMN target TEXT NOT NULL DEFAULT 'mailchimp'
    CHECK (target IN ('mailchimp', 'sandbox'));
-- Destinations connected before the choice existed: those reached through the console's
-- own /sandbox/ mount were on the built-in sandbox.
UPDATE destinations SET target = 'sandbox' WHERE api_base LIKE '%/sandbox%';
