//! `echo-service --import-journal DIR`: an operator who kept the echo service's state in a
//! journal (a volume, `DATA_DIR`) moves it into the database.
//!
//! Each instance is copied in one transaction with its bindings and its latest messages.
//! What the database already holds is never overwritten: an identical record counts as
//! already there (so a second run changes nothing), a different one is reported as a
//! conflict and left as it is.

use super::super::journal_store::{EchoState, Instance};
use super::super::store::RECENT_MESSAGES;
use super::PostgresStore;
use std::fmt;
use std::time::Duration;

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
}

impl fmt::Display for ImportReport {
    fn fmt(&self, out: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            out,
            "imported {} instance(s), {} binding(s) and {} message(s); {} record(s) already there; {} conflict(s)",
            self.instances,
            self.bindings,
            self.messages,
            self.already_there,
            self.conflicts.len()
        )
    }
}

/// What copying one instance did.
#[derive(Default)]
struct Copied {
    instance: bool,
    bindings: u64,
    messages: u64,
    already_there: u64,
    conflicts: Vec<String>,
}

/// Copies every instance of `state` (from a journal) into `store`'s database.
pub fn import_journal(store: &PostgresStore, state: EchoState) -> Result<ImportReport, String> {
    let mut instances: Vec<(String, Instance)> = state.instances.into_iter().collect();
    instances.sort_by(|a, b| a.0.cmp(&b.0));
    let mut report = ImportReport::default();
    for (instance_id, instance) in instances {
        let copied = store
            .call_within(INSTANCE_TIMEOUT, super::Call::Change, move |session| {
                copy_instance(&mut session.client, &instance_id, &instance)
            })
            .map_err(|error| error.description)?;
        report.instances += u64::from(copied.instance);
        report.bindings += copied.bindings;
        report.messages += copied.messages;
        report.already_there += copied.already_there;
        report.conflicts.extend(copied.conflicts);
    }
    Ok(report)
}

fn copy_instance(
    client: &mut postgres::Client,
    instance_id: &str,
    instance: &Instance,
) -> Result<Copied, postgres::Error> {
    let mut copied = Copied::default();
    let mut transaction = client.transaction()?;
    let attributes = super::to_json(&instance.attributes);
    let message_count = i64::try_from(instance.message_count).unwrap_or(i64::MAX);
    copied.instance = transaction.execute(
        "INSERT INTO echo_instances (instance_id, attributes, dashboard_token, message_count)
         VALUES ($1, $2, $3, $4) ON CONFLICT (instance_id) DO NOTHING",
        &[
            &instance_id,
            &attributes,
            &instance.dashboard_token,
            &message_count,
        ],
    )? == 1;
    if !copied.instance {
        let stored = transaction.query_one(
            "SELECT attributes, dashboard_token FROM echo_instances WHERE instance_id = $1",
            &[&instance_id],
        )?;
        let same = super::from_json(&stored, 0) == instance.attributes
            && stored.get::<_, String>(1) == instance.dashboard_token;
        if !same {
            copied.conflicts.push(format!(
                "instance '{instance_id}': the database holds other attributes or another dashboard token; left as it is, with its bindings"
            ));
            transaction.commit()?;
            return Ok(copied);
        }
        copied.already_there += 1;
    }
    for (binding_id, binding) in &instance.bindings {
        let attributes = super::to_json(&binding.attributes);
        let (expires_at, renew_before) = super::lifetime_columns(binding.lifetime);
        let inserted = transaction.execute(
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
        )?;
        if inserted == 1 {
            copied.bindings += 1;
            continue;
        }
        let stored = transaction.query_one(super::BINDING, &[&instance_id, binding_id])?;
        if super::read_binding(&stored, 0) == binding.record() {
            copied.already_there += 1;
        } else {
            copied.conflicts.push(format!(
                "binding '{binding_id}' of instance '{instance_id}': the database holds other attributes or credentials; left as it is"
            ));
        }
    }
    if copied.instance {
        copied.messages = copy_recent_messages(&mut transaction, instance_id, instance)?;
    }
    transaction.commit()?;
    Ok(copied)
}

/// The instance's latest previews into their ring slots, numbered as if they had been
/// recorded here: the newest is message number `message_count`.
fn copy_recent_messages(
    transaction: &mut postgres::Transaction<'_>,
    instance_id: &str,
    instance: &Instance,
) -> Result<u64, postgres::Error> {
    let kept = instance.recent_messages.len() as u64;
    let first = instance.message_count.saturating_sub(kept) + 1;
    for (offset, preview) in instance.recent_messages.iter().enumerate() {
        let sequence = i64::try_from(first + offset as u64).unwrap_or(i64::MAX);
        let slot = ((sequence - 1) % RECENT_MESSAGES as i64) as i16;
        transaction.execute(
            "INSERT INTO echo_recent_messages (instance_id, slot, sequence, preview)
             VALUES ($1, $2, $3, $4) ON CONFLICT (instance_id, slot) DO NOTHING",
            &[&instance_id, &slot, &sequence, preview],
        )?;
    }
    Ok(instance.message_count)
}
