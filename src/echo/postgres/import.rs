//! `echo-service --import-journal DIR`: an operator who kept the echo service's state in a
//! journal (a volume, `DATA_DIR`) moves it into the database.
//!
//! Each instance is copied in one transaction with its bindings and its latest messages.
//! What the database already holds is never overwritten: an identical record counts as
//! already there (so a second run changes nothing), a different one is reported as a
//! conflict and left as it is. An instance the database refuses is reported with the
//! reason and the import goes on with the rest; only a database that stops answering ends
//! it early.

use super::super::journal_store::{EchoState, Instance};
use super::super::store::RECENT_MESSAGES;
use super::pool::{Call, Failure};
use super::PostgresStore;
use deadpool_postgres::Transaction;
use std::fmt;
use std::time::Duration;
use tokio_postgres::Error;

/// How long one instance's copy may take (its bindings are copied in the same transaction).
const INSTANCE_TIMEOUT: Duration = Duration::from_secs(60);

/// What an import did.
#[derive(Debug, Default, PartialEq)]
pub struct ImportReport {
    pub instances: u64,
    pub bindings: u64,
    pub messages: u64,
    /// Records the database already held, identical.
    pub already_there: u64,
    /// Records the database holds differently, left as they are: one line each.
    pub conflicts: Vec<String>,
    /// Instances the database refused, with the reason: one line each.
    pub refused: Vec<String>,
}

impl fmt::Display for ImportReport {
    fn fmt(&self, out: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            out,
            "imported {} instance(s), {} binding(s) and {} message(s); {} record(s) already there; {} conflict(s); {} refused",
            self.instances,
            self.bindings,
            self.messages,
            self.already_there,
            self.conflicts.len(),
            self.refused.len()
        )
    }
}

/// An import the database ended early: it stopped answering before `next_instance` was
/// copied. The instances before it were copied; running the import again copies the rest.
#[derive(Debug)]
pub struct ImportError {
    pub database: super::DatabaseName,
    pub reason: String,
    pub next_instance: String,
}

impl fmt::Display for ImportError {
    fn fmt(&self, out: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            out,
            "the database {} {}; the instances before '{}' were copied, running the import again copies the rest",
            self.database, self.reason, self.next_instance
        )
    }
}

impl std::error::Error for ImportError {}

/// What copying one instance did.
#[derive(Default)]
struct Copied {
    instance: bool,
    bindings: u64,
    messages: u64,
    already_there: u64,
    conflicts: Vec<String>,
}

/// Copies every instance of `state` (from a journal) into `store`'s database. An `Err` is a
/// database that stopped answering; what was copied before stays.
pub fn import_journal(
    store: &PostgresStore,
    state: EchoState,
) -> Result<ImportReport, ImportError> {
    let mut instances: Vec<(String, Instance)> = state.instances.into_iter().collect();
    instances.sort_by(|a, b| a.0.cmp(&b.0));
    let mut report = ImportReport::default();
    for (instance_id, instance) in instances {
        let copied = store
            .connections
            .run(Call::Change, None, INSTANCE_TIMEOUT, async |client| {
                let mut transaction = client.transaction().await?;
                let copied = copy_instance(&mut transaction, &instance_id, &instance).await?;
                transaction.commit().await?;
                Ok(copied)
            });
        match copied {
            Ok(copied) => {
                report.instances += u64::from(copied.instance);
                report.bindings += copied.bindings;
                report.messages += copied.messages;
                report.already_there += copied.already_there;
                report.conflicts.extend(copied.conflicts);
            }
            Err(Failure::Statement(error)) if error.as_db_error().is_some() => {
                report.refused.push(format!(
                    "instance '{instance_id}': {}; nothing of it was copied",
                    super::pool::reason_of(&error)
                ));
            }
            Err(failure) => {
                return Err(ImportError {
                    database: store.name.clone(),
                    reason: failure.reason(store.connections.max_connections()),
                    next_instance: instance_id,
                })
            }
        }
    }
    Ok(report)
}

async fn copy_instance(
    transaction: &mut Transaction<'_>,
    instance_id: &str,
    instance: &Instance,
) -> Result<Copied, Error> {
    let mut copied = Copied::default();
    let attributes = super::to_json(&instance.attributes);
    let message_count = i64::try_from(instance.message_count).unwrap_or(i64::MAX);
    copied.instance = transaction
        .execute(
            "INSERT INTO echo_instances (instance_id, attributes, dashboard_token, message_count)
             VALUES ($1, $2, $3, $4) ON CONFLICT (instance_id) DO NOTHING",
            &[
                &instance_id,
                &attributes,
                &instance.dashboard_token,
                &message_count,
            ],
        )
        .await?
        == 1;
    if !copied.instance {
        let stored = transaction
            .query_one(
                "SELECT attributes, dashboard_token FROM echo_instances WHERE instance_id = $1",
                &[&instance_id],
            )
            .await?;
        let same = super::parse_attributes(&stored.try_get(0)?) == instance.attributes
            && stored.try_get::<_, String>(1)? == instance.dashboard_token;
        if !same {
            copied.conflicts.push(format!(
                "instance '{instance_id}': the database holds other attributes or another dashboard token; left as it is, with its bindings"
            ));
            return Ok(copied);
        }
        copied.already_there += 1;
    }
    for (binding_id, binding) in &instance.bindings {
        let attributes = super::to_json(&binding.attributes);
        let (expires_at, renew_before) = super::lifetime_columns(binding.lifetime);
        let inserted = transaction
            .execute(
                super::INSERT_BINDING,
                &[
                    &instance_id,
                    binding_id,
                    &attributes,
                    &binding.username,
                    &binding.password,
                    &expires_at,
                    &renew_before,
                ],
            )
            .await?;
        if inserted == 1 {
            copied.bindings += 1;
            continue;
        }
        let stored = transaction
            .query_one(super::BINDING, &[&instance_id, binding_id])
            .await?;
        if super::read_binding(&stored, 0)? == binding.record() {
            copied.already_there += 1;
        } else {
            copied.conflicts.push(format!(
                "binding '{binding_id}' of instance '{instance_id}': the database holds other attributes or credentials; left as it is"
            ));
        }
    }
    if copied.instance {
        copied.messages = copy_recent_messages(transaction, instance_id, instance).await?;
    }
    Ok(copied)
}

/// The instance's latest previews into their ring slots, numbered as if they had been
/// recorded here: the newest is message number `message_count`.
async fn copy_recent_messages(
    transaction: &mut Transaction<'_>,
    instance_id: &str,
    instance: &Instance,
) -> Result<u64, Error> {
    let kept = instance.recent_messages.len() as u64;
    let first = instance.message_count.saturating_sub(kept) + 1;
    for (offset, preview) in instance.recent_messages.iter().enumerate() {
        let sequence = i64::try_from(first + offset as u64).unwrap_or(i64::MAX);
        let slot = ((sequence - 1) % RECENT_MESSAGES as i64) as i16;
        transaction
            .execute(
                "INSERT INTO echo_recent_messages (instance_id, slot, sequence, preview)
                 VALUES ($1, $2, $3, $4) ON CONFLICT (instance_id, slot) DO NOTHING",
                &[&instance_id, &slot, &sequence, preview],
            )
            .await?;
    }
    Ok(instance.message_count)
}
