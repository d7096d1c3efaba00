"""The catalog's tables. All DDL is idempotent (IF NOT EXISTS) so opening an older workspace adds what is new.

Ids are VARCHAR everywhere: MovieLens uses integers, Amazon uses ASINs, generic data anything; one type
keeps joins simple.
"""

SCHEMA_VERSION = 1

SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR);

CREATE TABLE IF NOT EXISTS items (
    item_id     VARCHAR NOT NULL,
    title       VARCHAR,
    description VARCHAR,
    categories  VARCHAR[],
    attributes  JSON,
    domain      VARCHAR NOT NULL DEFAULT 'default',
    PRIMARY KEY (item_id)
);

CREATE TABLE IF NOT EXISTS users (
    user_id    VARCHAR NOT NULL,
    attributes JSON,
    domain     VARCHAR NOT NULL DEFAULT 'default',
    PRIMARY KEY (user_id)
);

CREATE TABLE IF NOT EXISTS interactions (
    user_id VARCHAR NOT NULL,
    item_id VARCHAR NOT NULL,
    ts      TIMESTAMP NOT NULL,
    rating  DOUBLE,
    domain  VARCHAR NOT NULL DEFAULT 'default'
);

-- Chronological leave-last-out split per user: the last interaction is 'test', the one before 'valid',
-- the rest 'train'. position = 0-based rank of the interaction in the user's time order.
CREATE TABLE IF NOT EXISTS splits (
    user_id  VARCHAR NOT NULL,
    item_id  VARCHAR NOT NULL,
    ts       TIMESTAMP NOT NULL,
    position INTEGER NOT NULL,
    split    VARCHAR NOT NULL,
    domain   VARCHAR NOT NULL DEFAULT 'default'
);

CREATE TABLE IF NOT EXISTS sid_versions (
    sid_version   INTEGER PRIMARY KEY,
    created_at    TIMESTAMP NOT NULL,
    levels        INTEGER NOT NULL,
    codebook_size INTEGER NOT NULL,
    n_items       INTEGER NOT NULL,
    config        JSON,
    report        JSON
);

CREATE TABLE IF NOT EXISTS item_sids (
    sid_version INTEGER NOT NULL,
    item_id     VARCHAR NOT NULL,
    codes       INTEGER[] NOT NULL,
    sid         VARCHAR NOT NULL,
    PRIMARY KEY (sid_version, item_id)
);

CREATE TABLE IF NOT EXISTS runs (
    run_id      VARCHAR PRIMARY KEY,
    kind        VARCHAR NOT NULL,
    status      VARCHAR NOT NULL,
    started_at  TIMESTAMP NOT NULL,
    finished_at TIMESTAMP,
    config      JSON,
    stats       JSON,
    error       VARCHAR
);

CREATE TABLE IF NOT EXISTS dataset_versions (
    name         VARCHAR NOT NULL,
    version      INTEGER NOT NULL,
    path         VARCHAR NOT NULL,
    rows         BIGINT NOT NULL,
    content_hash VARCHAR NOT NULL,
    created_at   TIMESTAMP NOT NULL,
    step         VARCHAR NOT NULL,
    run_id       VARCHAR,
    parents      JSON,
    manifest     JSON,
    PRIMARY KEY (name, version)
);

CREATE TABLE IF NOT EXISTS verdicts (
    dataset   VARCHAR NOT NULL,
    version   INTEGER NOT NULL,
    sample_id VARCHAR NOT NULL,
    filter    VARCHAR NOT NULL,
    keep      BOOLEAN NOT NULL,
    reason    VARCHAR,
    score     DOUBLE,
    run_id    VARCHAR
);

CREATE TABLE IF NOT EXISTS reviews (
    sample_id        VARCHAR NOT NULL,
    dataset          VARCHAR,
    annotator        VARCHAR NOT NULL,
    status           VARCHAR NOT NULL,
    rating           INTEGER,
    correct          VARCHAR,
    labels           VARCHAR[],
    corrected_answer VARCHAR,
    "values"         JSON,
    updated_at       TIMESTAMP,
    pulled_at        TIMESTAMP NOT NULL,
    PRIMARY KEY (sample_id, annotator)
);

CREATE TABLE IF NOT EXISTS evals (
    eval_id    VARCHAR PRIMARY KEY,
    created_at TIMESTAMP NOT NULL,
    model      VARCHAR NOT NULL,
    dataset    VARCHAR,
    config     JSON,
    metrics    JSON,
    lineage    JSON
);
"""
