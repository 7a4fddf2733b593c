-- In-doubt marks are exact. ledger_attempts.platforms no longer lists every platform an attempt
-- may publish to: it holds the platforms that may hold the attempt's batch in flight, recorded
-- before each platform is handed the batch and cleared by the attempt's next claim ('{}': none).
-- A takeover marks the dead attempt's rows still 'claimed' in doubt on these platforms only, and
-- on none when the batch was never handed to a platform. Only the column's documentation changes.
COMMENT ON COLUMN ledger_attempts.platforms IS
    'platforms that may hold the attempt''s batch in flight: set before each send, cleared by each claim';
