-- warmline call records, PostgreSQL. Applied once by the first instance that starts (under
-- an advisory lock) and recorded in warmline_schema_migrations. Never edit a released file:
-- add 0002_….sql instead.
--
-- Times stay RFC 3339 text, as in SQLite, so both backends serve the same JSON; they collate
-- bytewise ("C") so ordering and date-prefix comparisons match SQLite whatever the
-- database's locale. `ord` keeps insertion order where SQLite used its rowid.

CREATE TABLE calls (
    call_sid    TEXT PRIMARY KEY,
    from_number TEXT,
    to_number   TEXT,
    started_at  TEXT COLLATE "C",
    ended_at    TEXT COLLATE "C",
    outcome     TEXT,
    queue       TEXT,
    reason      TEXT,
    priority    TEXT,
    ord         BIGINT GENERATED ALWAYS AS IDENTITY
);
CREATE INDEX calls_by_start ON calls (started_at);

CREATE TABLE lines (
    call_sid   TEXT NOT NULL,
    seq        BIGINT NOT NULL,
    t_ms       BIGINT NOT NULL,
    speaker    TEXT NOT NULL,
    text       TEXT NOT NULL,
    confidence DOUBLE PRECISION,
    prompt     TEXT,
    PRIMARY KEY (call_sid, seq)
);

CREATE TABLE decisions (
    call_sid TEXT NOT NULL,
    seq      BIGINT NOT NULL,
    t_ms     BIGINT NOT NULL,
    decision TEXT NOT NULL,
    detail   TEXT NOT NULL,
    PRIMARY KEY (call_sid, seq)
);

CREATE TABLE handoffs (
    id              TEXT PRIMARY KEY,
    call_sid        TEXT NOT NULL,
    card_json       TEXT NOT NULL,
    spoken_summary  TEXT NOT NULL,
    created_at      TEXT COLLATE "C" NOT NULL,
    transfer_status TEXT,
    transfer_detail TEXT,
    ord             BIGINT GENERATED ALWAYS AS IDENTITY
);
CREATE INDEX handoffs_by_call ON handoffs (call_sid);
