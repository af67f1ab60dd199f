//! The echo service's tables, created at start when missing and upgraded in numbered steps.
//!
//! Several instances may start at the same moment on an empty database: each takes the same
//! transaction-level advisory lock first, so one creates the schema and the others, once it
//! commits, find it done. The version is a row of `echo_schema_version`; a database written
//! by a newer echo service (a version this one does not know) is refused, not touched.

use deadpool_postgres::Object;
use tokio_postgres::Error;

/// The advisory lock's key: "echo" in ASCII, so an operator reading `pg_locks` can tell.
const SCHEMA_LOCK: i64 = 0x6563_686f;

/// The steps, in order; step N brings the schema to version N. Never edit one that has
/// shipped: add the next.
const MIGRATIONS: [&str; 3] = [
    // 1: instances, bindings and the dashboard's latest messages. Attributes are the JSON
    // the platform sent (NULL for an instance the original broker made without them).
    "CREATE TABLE echo_instances (
        instance_id text PRIMARY KEY,
        attributes text,
        dashboard_token text NOT NULL,
        message_count bigint NOT NULL DEFAULT 0 CHECK (message_count >= 0),
        created_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE TABLE echo_bindings (
        instance_id text NOT NULL REFERENCES echo_instances ON DELETE CASCADE,
        binding_id text NOT NULL,
        attributes text,
        username text NOT NULL,
        password text NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (instance_id, binding_id)
    );
    -- A ring of 10 slots per instance: its key bounds the messages kept, whoever writes.
    CREATE TABLE echo_recent_messages (
        instance_id text NOT NULL REFERENCES echo_instances ON DELETE CASCADE,
        slot smallint NOT NULL CHECK (slot >= 0 AND slot < 10),
        sequence bigint NOT NULL,
        preview text NOT NULL CHECK (octet_length(preview) <= 200),
        PRIMARY KEY (instance_id, slot)
    );",
    // 2: bindings that expire (a plan's `binding_lifetime`): when the credentials stop
    // working, and from when the platform should replace them.
    "ALTER TABLE echo_bindings
        ADD COLUMN expires_at timestamptz,
        ADD COLUMN renew_before timestamptz;",
    // 3: a deprovision in one round trip. The instance's row is locked first (binds under
    // way finish), and only then are its bindings counted, by a statement of its own that
    // sees them (each statement of a function takes a fresh snapshot): the count is of the
    // bindings removed. Nothing if the instance is gone or its attributes are not $2.
    "CREATE FUNCTION echo_deprovision(wanted text, expected text)
    RETURNS TABLE (removed_attributes text, removed_token text, removed_messages bigint,
        removed_bindings bigint)
    LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM 1 FROM echo_instances i
            WHERE i.instance_id = wanted AND i.attributes IS NOT DISTINCT FROM expected
            FOR UPDATE;
        IF NOT FOUND THEN
            RETURN;
        END IF;
        RETURN QUERY
            WITH removed AS (
                DELETE FROM echo_instances i WHERE i.instance_id = wanted
                RETURNING i.attributes, i.dashboard_token, i.message_count)
            SELECT r.attributes, r.dashboard_token, r.message_count,
                (SELECT count(*) FROM echo_bindings b WHERE b.instance_id = wanted)
            FROM removed r;
    END $$;",
];

/// Which schema the database holds once start-up has looked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemaVersion {
    /// The latest, made or brought up to date just now if need be.
    Current,
    /// A newer one than this echo service knows: it must not use the database.
    Newer { found: i32, known: i32 },
}

/// Brings the schema to the latest version, unless the database holds a newer one; `Err` is
/// the database failing.
pub async fn create_or_upgrade(client: &mut Object) -> Result<SchemaVersion, Error> {
    let transaction = client.transaction().await?;
    // Waiting behind another echo service's start (its advisory lock), or behind a long
    // transaction for an upgrade's ALTER TABLE, is up to the caller's deadline, not the
    // 2.5-s lock timeout that keeps requests short.
    transaction
        .batch_execute("SET LOCAL lock_timeout = 0; SET LOCAL statement_timeout = 0")
        .await?;
    transaction
        .execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])
        .await?;
    transaction
        .batch_execute("CREATE TABLE IF NOT EXISTS echo_schema_version (version integer NOT NULL)")
        .await?;
    let current: i32 = transaction
        .query_one(
            "SELECT coalesce(max(version), 0) FROM echo_schema_version",
            &[],
        )
        .await?
        .try_get(0)?;
    let known = MIGRATIONS.len() as i32;
    if current > known {
        return Ok(SchemaVersion::Newer {
            found: current,
            known,
        });
    }
    for (step, migration) in MIGRATIONS.iter().enumerate().skip(current.max(0) as usize) {
        transaction.batch_execute(migration).await?;
        let version = step as i32 + 1;
        transaction
            .execute("DELETE FROM echo_schema_version", &[])
            .await?;
        transaction
            .execute("INSERT INTO echo_schema_version VALUES ($1)", &[&version])
            .await?;
        log::info!("echo service: the database's schema is now at version {version}");
    }
    transaction.commit().await?;
    Ok(SchemaVersion::Current)
}
