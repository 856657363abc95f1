-- Operator accounts (tracker/accounts.py, tracker/store/accounts.py, tracker/api/auth.py).
-- A password is stored only as its argon2id hash; a session or an API token only as the SHA-256
-- of its random value (256 bits: a fast hash is enough, and a stolen table opens no session).
-- Times are the database's clock (now()), not the service clock a demo may shift: a session
-- lasts a real shift, whatever day the demo plays.

CREATE TABLE accounts (
    name                text        PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$'),
    role                text        NOT NULL CHECK (role IN ('operator', 'admin')),
    password_hash       text        NOT NULL,
    created_at          timestamptz NOT NULL DEFAULT now(),
    password_changed_at timestamptz NOT NULL DEFAULT now()
);

-- A login in a browser: the cookie holds the token, the page sends csrf_token back on writes.
CREATE TABLE account_sessions (
    token_sha256 bytea       PRIMARY KEY,
    account      text        NOT NULL REFERENCES accounts (name) ON DELETE CASCADE,
    csrf_token   text        NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL
);
CREATE INDEX account_sessions_expires_at ON account_sessions (expires_at);

-- A script's key (Authorization: Bearer ...), named by its label, until revoked.
CREATE TABLE api_tokens (
    token_sha256 bytea       PRIMARY KEY,
    account      text        NOT NULL REFERENCES accounts (name) ON DELETE CASCADE,
    label        text        NOT NULL CHECK (length(label) BETWEEN 1 AND 64),
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    UNIQUE (account, label)
);
