-- The fleet's call index: what every node answers GET /v1/calls,
-- /v1/calls/{id} and /v1/calls/{id}/consent from. Media files stay on the
-- node's disk; `node_id` says which node holds them.

-- One row per call: its latest call.json.
CREATE TABLE calls (
    call_id      text PRIMARY KEY,
    node_id      text NOT NULL,
    state        text NOT NULL CHECK (state IN ('active', 'ended')),
    started_at   timestamptz,
    ended_at     timestamptz,
    end_reason   text,
    participants integer NOT NULL DEFAULT 0,
    summary      jsonb NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX calls_started_at ON calls (started_at);
CREATE INDEX calls_active_by_node ON calls (node_id) WHERE state = 'active';

-- Every participant of a call, as call.json lists them.
CREATE TABLE participants (
    call_id        text NOT NULL REFERENCES calls (call_id) ON DELETE CASCADE,
    participant_id text NOT NULL,
    node_id        text NOT NULL,
    summary        jsonb NOT NULL,
    PRIMARY KEY (call_id, participant_id)
);

-- The consent audit log, line by line, exactly as consent.jsonl holds it
-- (the hash chain is checked over `line`).
CREATE TABLE consent_events (
    call_id  text NOT NULL,
    seq      bigint NOT NULL,
    node_id  text NOT NULL,
    at       timestamptz,
    event    text NOT NULL,
    line     text NOT NULL,
    PRIMARY KEY (call_id, seq)
);

-- Transcript metadata (the transcript itself stays in transcript.json).
CREATE TABLE transcripts (
    call_id    text PRIMARY KEY,
    node_id    text NOT NULL,
    backend    text,
    model      text,
    segments   integer NOT NULL,
    complete   boolean NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Meetings imported as metadata only (no media).
CREATE TABLE meetings (
    call_id    text PRIMARY KEY,
    node_id    text NOT NULL,
    meeting    jsonb NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
