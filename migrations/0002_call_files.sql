-- Every recording file of a call, by the node that holds it, in the order
-- they were created: a call that goes on on another node after its node was
-- lost lists the files recorded before as its earlier segments.
CREATE TABLE call_files (
    call_id    text NOT NULL,
    file       text NOT NULL,
    node_id    text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (call_id, node_id, file)
);
CREATE INDEX call_files_by_call ON call_files (call_id, created_at);
