-- Circuit breaker state shared by every worker process: one row per breaker (platform).
-- Counters change only through single-statement updates (counter = counter + 1), so
-- concurrent workers never lose an increment.
CREATE TABLE IF NOT EXISTS circuit_breakers (
    name            text        PRIMARY KEY,
    state           text        NOT NULL DEFAULT 'closed'
        CHECK (state IN ('closed', 'open', 'half-open')),
    fail_counter    integer     NOT NULL DEFAULT 0,
    success_counter integer     NOT NULL DEFAULT 0,
    opened_at       timestamptz,
    updated_at      timestamptz NOT NULL DEFAULT now()
);
