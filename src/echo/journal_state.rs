//! The state the journal store holds in memory: every instance, binding and message count,
//! laid out so that memory follows the data rather than the structure.
//!
//! What an instance and a binding cost (64-bit Linux, glibc's allocator; measured on the
//! release build, see docs/reliability.md), and why:
//!
//! - **An instance**, about 450 bytes with short ids and no context: one allocation of 192
//!   bytes (its record, shared with a compaction under way through an `Arc`), its id (16
//!   bytes of counts and the id's bytes), a slot in the table (24 bytes, the table at most
//!   half empty), and one allocation per string it holds: organization and space, the
//!   dashboard token, and its context and parameters kept as the compact JSON text the
//!   platform sent (not a tree of maps and strings). Service and plan ids are shared by
//!   every record that names them. A platform's context adds about its length.
//! - **A binding**, about 310 bytes: one 128-byte entry in its instance's sorted list (grown
//!   one at a time, never to spare capacity: most instances have one or two), and its id,
//!   user, password and app id strings. (The `BTreeMap` it replaced allocated a node for
//!   eleven bindings, 2.3 KB, for an instance's first: 2.5 KB a binding in all.)
//!
//! Its JSON, the journal's snapshot, is the same as when the state was plain maps and
//! strings ([`Instance`] and [`Binding`], which `--import-journal` still receives), so
//! journals written before read as they did.
//!
//! The changes the journal records, how each edits this layout and what undoes it, are in
//! `changes`; this file is the layout alone.

mod changes;

#[cfg(test)]
pub(crate) use changes::test_changes;
pub use changes::{Change, Undo};

use super::api::{
    non_empty, BindingAttributes, BindingLifetime, InstanceAttributes, InstanceUpdate,
};
use super::store::{BindingRecord, InstanceRecord};
use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;

// ---------------------------------------------------------------------------------------
// The plain form: what `--import-journal` copies
// ---------------------------------------------------------------------------------------

/// One provisioned instance, as plain values.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Instance {
    pub attributes: Option<InstanceAttributes>,
    pub dashboard_token: String,
    pub bindings: BTreeMap<String, Binding>,
    pub recent_messages: VecDeque<String>,
    pub message_count: u64,
}

/// One binding, with the credentials unique to it, as plain values.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Binding {
    pub attributes: Option<BindingAttributes>,
    pub username: String,
    pub password: String,
    /// (Journals written before bindings expired have none.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifetime: Option<BindingLifetime>,
}

impl Binding {
    /// The binding as the store answers with it (`--import-journal` compares the database's
    /// with it).
    pub(super) fn record(&self) -> BindingRecord {
        BindingRecord {
            attributes: self.attributes.clone(),
            username: self.username.clone(),
            password: self.password.clone(),
            lifetime: self.lifetime,
        }
    }
}

// ---------------------------------------------------------------------------------------
// The state as held
// ---------------------------------------------------------------------------------------

/// Everything the echo service knows; what the journal's snapshot holds. Iterating
/// [`EchoState::instances`] by value gives each instance in the plain form.
#[derive(Debug, Default, Clone, Serialize)]
pub struct EchoState {
    pub instances: Instances,
    /// Service and plan ids, one copy of each shared by every record that names it.
    #[serde(skip)]
    names: Names,
}

/// The instances, by id. A copy (for a compaction) shares every instance with the live
/// state until one of them changes.
#[derive(Debug, Default, Clone)]
pub struct Instances(HashMap<Arc<str>, Arc<HeldInstance>>);

/// One instance as held.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HeldInstance {
    attributes: Option<HeldAttributes>,
    dashboard_token: Box<str>,
    bindings: Bindings,
    recent_messages: VecDeque<Box<str>>,
    message_count: u64,
}

/// [`InstanceAttributes`] as held: shared ids, JSON as its text.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct HeldAttributes {
    service_id: Arc<str>,
    plan_id: Arc<str>,
    organization_guid: Box<str>,
    space_guid: Box<str>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    context: Option<Box<RawValue>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    parameters: Option<Box<RawValue>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    maintenance_info: Option<Box<RawValue>>,
}

/// One binding as held.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HeldBinding {
    attributes: Option<HeldBindingAttributes>,
    username: Box<str>,
    password: Box<str>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    lifetime: Option<BindingLifetime>,
}

/// [`BindingAttributes`] as held.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct HeldBindingAttributes {
    service_id: Arc<str>,
    plan_id: Arc<str>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    app_guid: Option<Box<str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    bind_resource: Option<Box<RawValue>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    parameters: Option<Box<RawValue>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    predecessor_binding_id: Option<Box<str>>,
}

/// An instance's bindings, sorted by id (as the dashboard lists them), in a list that holds
/// exactly as many as there are.
#[derive(Debug, Clone, Default)]
struct Bindings(Vec<(Box<str>, HeldBinding)>);

/// Shared copies of the few ids that every record repeats (services and plans come from
/// the broker's catalog). Bounded: past [`Names::MOST`] distinct ids, each record keeps its
/// own copy.
#[derive(Debug, Default, Clone)]
struct Names(HashSet<Arc<str>>);

impl Names {
    const MOST: usize = 1024;

    fn share(&mut self, name: &str) -> Arc<str> {
        if let Some(shared) = self.0.get(name) {
            return Arc::clone(shared);
        }
        let name: Arc<str> = Arc::from(name);
        if self.0.len() < Names::MOST {
            self.0.insert(Arc::clone(&name));
        }
        name
    }

    /// `name` replaced by its shared copy.
    fn share_in_place(&mut self, name: &mut Arc<str>) {
        *name = self.share(name);
    }
}

/// JSON as its compact text. A `Value` always serialises, so nothing is ever lost here.
fn to_raw(value: Option<Value>) -> Option<Box<RawValue>> {
    non_empty(value).and_then(|value| serde_json::value::to_raw_value(&value).ok())
}

/// The JSON text back as a value (text this state wrote itself, so it always reads).
fn from_raw(raw: &Option<Box<RawValue>>) -> Option<Value> {
    raw.as_ref()
        .and_then(|raw| serde_json::from_str(raw.get()).ok())
}

impl HeldAttributes {
    fn new(attributes: InstanceAttributes, names: &mut Names) -> HeldAttributes {
        HeldAttributes {
            service_id: names.share(&attributes.service_id),
            plan_id: names.share(&attributes.plan_id),
            organization_guid: attributes.organization_guid.into_boxed_str(),
            space_guid: attributes.space_guid.into_boxed_str(),
            context: to_raw(attributes.context),
            parameters: to_raw(attributes.parameters),
            maintenance_info: to_raw(attributes.maintenance_info),
        }
    }

    fn plain(&self) -> InstanceAttributes {
        InstanceAttributes {
            service_id: self.service_id.to_string(),
            plan_id: self.plan_id.to_string(),
            organization_guid: self.organization_guid.to_string(),
            space_guid: self.space_guid.to_string(),
            context: from_raw(&self.context),
            parameters: from_raw(&self.parameters),
            maintenance_info: from_raw(&self.maintenance_info),
        }
    }

    /// Absent fields stay as they are; an empty object clears (as `store::apply_update`).
    fn update(&mut self, update: InstanceUpdate, names: &mut Names) {
        if let Some(plan_id) = update.plan_id {
            self.plan_id = names.share(&plan_id);
        }
        if let Some(parameters) = update.parameters {
            self.parameters = to_raw(Some(parameters));
        }
        if let Some(context) = update.context {
            self.context = to_raw(Some(context));
        }
        if let Some(maintenance_info) = update.maintenance_info {
            self.maintenance_info = to_raw(Some(maintenance_info));
        }
    }
}

impl HeldBindingAttributes {
    fn new(attributes: BindingAttributes, names: &mut Names) -> HeldBindingAttributes {
        HeldBindingAttributes {
            service_id: names.share(&attributes.service_id),
            plan_id: names.share(&attributes.plan_id),
            app_guid: attributes.app_guid.map(String::into_boxed_str),
            bind_resource: to_raw(attributes.bind_resource),
            parameters: to_raw(attributes.parameters),
            predecessor_binding_id: attributes
                .predecessor_binding_id
                .map(String::into_boxed_str),
        }
    }

    fn plain(&self) -> BindingAttributes {
        BindingAttributes {
            service_id: self.service_id.to_string(),
            plan_id: self.plan_id.to_string(),
            app_guid: self.app_guid.as_deref().map(str::to_string),
            bind_resource: from_raw(&self.bind_resource),
            parameters: from_raw(&self.parameters),
            predecessor_binding_id: self.predecessor_binding_id.as_deref().map(str::to_string),
        }
    }
}

impl HeldInstance {
    /// The instance as the store answers with it.
    pub fn record(&self) -> InstanceRecord {
        InstanceRecord {
            attributes: self.attributes.as_ref().map(HeldAttributes::plain),
            dashboard_token: self.dashboard_token.to_string(),
            bindings: self.bindings.0.len(),
            messages: self.message_count,
        }
    }

    /// Its service and plan, when it recorded them (an instance the original broker made
    /// did not).
    pub fn service_and_plan(&self) -> Option<(&str, &str)> {
        self.attributes
            .as_ref()
            .map(|attributes| (&*attributes.service_id, &*attributes.plan_id))
    }

    pub fn binding(&self, binding_id: &str) -> Option<&HeldBinding> {
        self.bindings.get(binding_id)
    }

    pub fn binding_count(&self) -> usize {
        self.bindings.0.len()
    }

    pub fn binding_ids(&self) -> Vec<String> {
        self.bindings
            .0
            .iter()
            .map(|(id, _)| id.to_string())
            .collect()
    }

    /// The latest messages' previews, oldest first.
    pub fn recent_messages(&self) -> Vec<String> {
        self.recent_messages
            .iter()
            .map(|preview| preview.to_string())
            .collect()
    }

    pub fn message_count(&self) -> u64 {
        self.message_count
    }

    fn plain(&self) -> Instance {
        Instance {
            attributes: self.attributes.as_ref().map(HeldAttributes::plain),
            dashboard_token: self.dashboard_token.to_string(),
            bindings: self
                .bindings
                .0
                .iter()
                .map(|(id, binding)| (id.to_string(), binding.plain()))
                .collect(),
            recent_messages: self.recent_messages().into(),
            message_count: self.message_count,
        }
    }

    fn share_names(&mut self, names: &mut Names) {
        if let Some(attributes) = &mut self.attributes {
            names.share_in_place(&mut attributes.service_id);
            names.share_in_place(&mut attributes.plan_id);
        }
        for (_, binding) in &mut self.bindings.0 {
            if let Some(attributes) = &mut binding.attributes {
                names.share_in_place(&mut attributes.service_id);
                names.share_in_place(&mut attributes.plan_id);
            }
        }
    }
}

impl HeldBinding {
    /// The binding as the store answers with it.
    pub fn record(&self) -> BindingRecord {
        BindingRecord {
            attributes: self.attributes.as_ref().map(HeldBindingAttributes::plain),
            username: self.username.to_string(),
            password: self.password.to_string(),
            lifetime: self.lifetime,
        }
    }

    /// When its credentials stop working, if they do.
    pub fn lifetime(&self) -> Option<BindingLifetime> {
        self.lifetime
    }

    pub fn username(&self) -> &str {
        &self.username
    }

    pub fn password(&self) -> &str {
        &self.password
    }

    fn plain(&self) -> Binding {
        Binding {
            attributes: self.attributes.as_ref().map(HeldBindingAttributes::plain),
            username: self.username.to_string(),
            password: self.password.to_string(),
            lifetime: self.lifetime,
        }
    }
}

impl Bindings {
    fn position(&self, binding_id: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(id, _)| (**id).cmp(binding_id))
    }

    fn get(&self, binding_id: &str) -> Option<&HeldBinding> {
        let index = self.position(binding_id).ok()?;
        Some(&self.0[index].1)
    }

    /// Inserts a binding not there yet, growing the list by exactly one.
    fn insert(&mut self, binding_id: Box<str>, binding: HeldBinding) {
        if let Err(index) = self.position(&binding_id) {
            self.0.reserve_exact(1);
            self.0.insert(index, (binding_id, binding));
        }
    }

    fn remove(&mut self, binding_id: &str) -> Option<HeldBinding> {
        let index = self.position(binding_id).ok()?;
        let (_, binding) = self.0.remove(index);
        self.0.shrink_to_fit();
        Some(binding)
    }
}

impl Instances {
    pub fn get(&self, instance_id: &str) -> Option<&HeldInstance> {
        self.0.get(instance_id).map(|instance| &**instance)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Every instance held, in no order.
    pub fn values(&self) -> impl Iterator<Item = &HeldInstance> {
        self.0.values().map(|instance| &**instance)
    }

    /// The instance, to change; copied first if a compaction's copy shares it.
    fn get_mut(&mut self, instance_id: &str) -> Option<&mut HeldInstance> {
        self.0.get_mut(instance_id).map(Arc::make_mut)
    }
}

/// Each instance with its id, in the plain form (for `--import-journal`).
impl IntoIterator for Instances {
    type Item = (String, Instance);
    type IntoIter = std::vec::IntoIter<(String, Instance)>;

    fn into_iter(self) -> Self::IntoIter {
        self.0
            .into_iter()
            .map(|(id, instance)| (id.to_string(), instance.plain()))
            .collect::<Vec<_>>()
            .into_iter()
    }
}

impl EchoState {
    /// A copy of the state as it is now, for a compaction to write while the state goes on
    /// changing: it shares every instance, so making it costs a table of pointers, and an
    /// instance changed meanwhile is copied then, alone.
    pub fn freeze(&self) -> EchoState {
        self.clone()
    }
}

// ---------------------------------------------------------------------------------------
// The snapshot's JSON: `{"instances": {id: instance, ...}}`, as it always was
// ---------------------------------------------------------------------------------------

impl Serialize for Instances {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (id, instance) in &self.0 {
            map.serialize_entry(&**id, &**instance)?;
        }
        map.end()
    }
}

impl Serialize for Bindings {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (id, binding) in &self.0 {
            map.serialize_entry(&**id, binding)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Instances {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct InstancesVisitor;
        impl<'de> Visitor<'de> for InstancesVisitor {
            type Value = Instances;
            fn expecting(&self, out: &mut std::fmt::Formatter) -> std::fmt::Result {
                out.write_str("a map of instances by id")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Instances, A::Error> {
                let mut instances = HashMap::with_capacity(map.size_hint().unwrap_or(0));
                while let Some((id, instance)) = map.next_entry::<Box<str>, HeldInstance>()? {
                    instances.insert(Arc::from(id), Arc::new(instance));
                }
                Ok(Instances(instances))
            }
        }
        deserializer.deserialize_map(InstancesVisitor)
    }
}

impl<'de> Deserialize<'de> for Bindings {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct BindingsVisitor;
        impl<'de> Visitor<'de> for BindingsVisitor {
            type Value = Bindings;
            fn expecting(&self, out: &mut std::fmt::Formatter) -> std::fmt::Result {
                out.write_str("a map of bindings by id")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Bindings, A::Error> {
                let mut bindings: Vec<(Box<str>, HeldBinding)> = Vec::new();
                while let Some(entry) = map.next_entry::<Box<str>, HeldBinding>()? {
                    bindings.push(entry);
                }
                // As a map read them: sorted by id, the last of a repeated id kept.
                bindings.reverse();
                bindings.sort_by(|a, b| a.0.cmp(&b.0));
                bindings.dedup_by(|later, earlier| later.0 == earlier.0);
                bindings.shrink_to_fit();
                Ok(Bindings(bindings))
            }
        }
        deserializer.deserialize_map(BindingsVisitor)
    }
}

impl<'de> Deserialize<'de> for EchoState {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Snapshot {
            instances: Instances,
        }
        let Snapshot { mut instances } = Snapshot::deserialize(deserializer)?;
        let mut names = Names::default();
        for instance in instances.0.values_mut() {
            Arc::make_mut(instance).share_names(&mut names);
        }
        Ok(EchoState { instances, names })
    }
}

#[cfg(test)]
mod tests {
    use super::changes::test_changes::{message, provision};
    use super::*;
    use crate::echo::journal::Recorded;

    fn as_json(state: &EchoState) -> serde_json::Value {
        serde_json::to_value(state).expect("state serialises")
    }

    /// The snapshot of the plain form (what journals held before) as it was written then.
    fn plain_snapshot() -> serde_json::Value {
        let context = serde_json::json!({"platform": "cloudfoundry", "organization_name": "HP"});
        let binding = Binding {
            attributes: Some(BindingAttributes {
                service_id: "echo_service".into(),
                plan_id: "big_0001".into(),
                app_guid: Some("app".into()),
                bind_resource: Some(serde_json::json!({"app_guid": "app"})),
                parameters: None,
                predecessor_binding_id: None,
            }),
            username: "user".into(),
            password: "pass \"word\"".into(),
            lifetime: None,
        };
        let instance = Instance {
            attributes: Some(InstanceAttributes {
                service_id: "echo_service".into(),
                plan_id: "big_0001".into(),
                organization_guid: "o".into(),
                space_guid: "s".into(),
                context: Some(context),
                parameters: Some(serde_json::json!({"n": 1.5, "list": [1, "a", null]})),
                maintenance_info: None,
            }),
            dashboard_token: "token".into(),
            bindings: [
                ("b2".to_string(), binding.clone()),
                ("b1".to_string(), binding),
            ]
            .into_iter()
            .collect(),
            recent_messages: ["one".to_string(), "two".to_string()].into(),
            message_count: 7,
        };
        let original = Instance {
            attributes: None,
            dashboard_token: "t2".into(),
            bindings: BTreeMap::new(),
            recent_messages: VecDeque::new(),
            message_count: 0,
        };
        serde_json::json!({"instances": {"i": instance, "from-the-original": original}})
    }

    #[test]
    fn the_snapshot_reads_and_writes_as_the_plain_form_did() {
        let text = plain_snapshot().to_string();
        let state: EchoState = serde_json::from_str(&text).expect("the plain form reads");
        assert_eq!(as_json(&state), plain_snapshot());
        let frozen = serde_json::to_value(state.freeze()).expect("a copy serialises");
        assert_eq!(frozen, plain_snapshot());
        let nothing_held = serde_json::from_str::<EchoState>("{}");
        assert!(
            nothing_held.is_err(),
            "a state without its instances is not read as empty"
        );
        let instance = state.instances.get("i").expect("the instance");
        assert_eq!(instance.binding_ids(), ["b1", "b2"]);
        assert_eq!(instance.record().bindings, 2);
        let plain: Vec<(String, Instance)> = state.instances.into_iter().collect();
        assert_eq!(plain.len(), 2);
    }

    #[test]
    fn service_and_plan_ids_are_shared_and_a_copy_shares_every_instance() {
        let mut state = EchoState::default();
        for n in 0..3 {
            state.apply(provision(&format!("i{n}")));
        }
        let service_ids: Vec<*const u8> = state
            .instances
            .0
            .values()
            .filter_map(|instance| instance.attributes.as_ref())
            .map(|attributes| attributes.service_id.as_ptr())
            .collect();
        assert!(service_ids.windows(2).all(|pair| pair[0] == pair[1]));
        let frozen = state.freeze();
        state.apply(message("i0", "changed after the copy"));
        let messages =
            |state: &EchoState| state.instances.get("i0").map(HeldInstance::message_count);
        assert_eq!(messages(&frozen), Some(0));
        assert_eq!(messages(&state), Some(1));
        let unchanged = |state: &EchoState| Arc::as_ptr(&state.instances.0["i1"]);
        assert_eq!(unchanged(&frozen), unchanged(&state));
    }
}
