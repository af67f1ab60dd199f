//! The changes to the echo service's state, as the journal records them ([`Change`]), how
//! each is applied to the compact state, and what undoes it ([`Undo`]).
//!
//! A change is applied under the store's state lock before it is durable, so that the next
//! request sees it; if the journal then cannot make it durable, its undo puts the state back
//! as it was, and memory never holds what the disk does not. This file knows the state's
//! layout (a change edits it in place, sharing ids as the state does); the layout, its
//! costs and its snapshot's JSON are the compact state's ([`super`]).

use super::{
    Bindings, EchoState, HeldAttributes, HeldBinding, HeldBindingAttributes, HeldInstance,
};
use crate::echo::api::{BindingAttributes, BindingLifetime, InstanceAttributes, InstanceUpdate};
use crate::echo::journal::Recorded;
use crate::echo::store::{preview_of, RECENT_MESSAGES};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::sync::Arc;

/// One change to the state: what the journal records, and what replay applies again.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum Change {
    Provision {
        instance_id: String,
        attributes: Option<InstanceAttributes>,
        dashboard_token: String,
    },
    Update {
        instance_id: String,
        update: InstanceUpdate,
    },
    Deprovision {
        instance_id: String,
    },
    Bind {
        instance_id: String,
        binding_id: String,
        attributes: Option<BindingAttributes>,
        username: String,
        password: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        lifetime: Option<BindingLifetime>,
    },
    Unbind {
        instance_id: String,
        binding_id: String,
    },
    /// A message was echoed: it is counted, and its preview shown on the dashboard.
    Message {
        instance_id: String,
        /// At most `PREVIEW_BYTES`. (Journals written before held the whole message.)
        #[serde(alias = "message")]
        preview: String,
    },
}

/// What puts the state back as it was before one change: a change that was applied but
/// could not be made durable is undone, so memory never holds what the disk does not.
#[derive(Debug)]
pub enum Undo {
    Nothing,
    RemoveInstance(String),
    RestoreInstance(Arc<str>, Arc<HeldInstance>),
    RestoreAttributes(String, Box<HeldAttributesUndo>),
    RemoveBinding(String, String),
    RestoreBinding(String, Box<str>, Box<HeldBinding>),
    UncountMessage {
        instance_id: String,
        /// The oldest preview, pushed out by the message's.
        pushed_out: Option<Box<str>>,
    },
}

/// The attributes an update replaced.
#[derive(Debug)]
pub struct HeldAttributesUndo(HeldAttributes);

impl Recorded for EchoState {
    type Change = Change;

    /// Applies a change that was checked against this state (live, or replayed from disk).
    /// A change that no longer fits (say, a bind whose instance is gone) is ignored.
    fn apply(&mut self, change: Change) {
        let _ = self.apply_undoable(change);
    }
}

impl EchoState {
    /// [`Recorded::apply`], returning what undoes it.
    pub fn apply_undoable(&mut self, change: Change) -> Undo {
        match change {
            Change::Provision {
                instance_id,
                attributes,
                dashboard_token,
            } => self.provision(instance_id, attributes, dashboard_token),
            Change::Update {
                instance_id,
                update,
            } => self.update(instance_id, update),
            Change::Deprovision { instance_id } => {
                match self.instances.0.remove_entry(instance_id.as_str()) {
                    Some((id, instance)) => Undo::RestoreInstance(id, instance),
                    None => Undo::Nothing,
                }
            }
            Change::Bind {
                instance_id,
                binding_id,
                attributes,
                username,
                password,
                lifetime,
            } => {
                let binding = HeldBinding {
                    attributes: attributes
                        .map(|attributes| HeldBindingAttributes::new(attributes, &mut self.names)),
                    username: username.into_boxed_str(),
                    password: password.into_boxed_str(),
                    lifetime,
                };
                self.bind(instance_id, binding_id, binding)
            }
            Change::Unbind {
                instance_id,
                binding_id,
            } => self.unbind(instance_id, binding_id),
            Change::Message {
                instance_id,
                preview,
            } => self.count_message(instance_id, preview),
        }
    }

    /// Puts back what [`EchoState::apply_undoable`] changed.
    pub fn undo(&mut self, undo: Undo) {
        match undo {
            Undo::Nothing => {}
            Undo::RemoveInstance(instance_id) => {
                self.instances.0.remove(instance_id.as_str());
            }
            Undo::RestoreInstance(instance_id, instance) => {
                self.instances.0.insert(instance_id, instance);
            }
            Undo::RestoreAttributes(instance_id, attributes) => {
                if let Some(instance) = self.instances.get_mut(&instance_id) {
                    instance.attributes = Some(attributes.0);
                }
            }
            Undo::RemoveBinding(instance_id, binding_id) => {
                if let Some(instance) = self.instances.get_mut(&instance_id) {
                    instance.bindings.remove(&binding_id);
                }
            }
            Undo::RestoreBinding(instance_id, binding_id, binding) => {
                if let Some(instance) = self.instances.get_mut(&instance_id) {
                    instance.bindings.insert(binding_id, *binding);
                }
            }
            Undo::UncountMessage {
                instance_id,
                pushed_out,
            } => {
                if let Some(instance) = self.instances.get_mut(&instance_id) {
                    instance.message_count -= 1;
                    instance.recent_messages.pop_back();
                    if let Some(preview) = pushed_out {
                        instance.recent_messages.push_front(preview);
                    }
                }
            }
        }
    }

    fn provision(
        &mut self,
        instance_id: String,
        attributes: Option<InstanceAttributes>,
        dashboard_token: String,
    ) -> Undo {
        if self.instances.0.contains_key(instance_id.as_str()) {
            return Undo::Nothing;
        }
        let instance = HeldInstance {
            attributes: attributes
                .map(|attributes| HeldAttributes::new(attributes, &mut self.names)),
            dashboard_token: dashboard_token.into_boxed_str(),
            bindings: Bindings::default(),
            recent_messages: VecDeque::new(),
            message_count: 0,
        };
        let id: Arc<str> = Arc::from(instance_id.as_str());
        self.instances.0.insert(id, Arc::new(instance));
        Undo::RemoveInstance(instance_id)
    }

    fn update(&mut self, instance_id: String, update: InstanceUpdate) -> Undo {
        let Some(attributes) = self
            .instances
            .get_mut(&instance_id)
            .and_then(|instance| instance.attributes.as_mut())
        else {
            return Undo::Nothing;
        };
        let before = attributes.clone();
        attributes.update(update, &mut self.names);
        Undo::RestoreAttributes(instance_id, Box::new(HeldAttributesUndo(before)))
    }

    fn bind(&mut self, instance_id: String, binding_id: String, binding: HeldBinding) -> Undo {
        let Some(instance) = self.instances.get_mut(&instance_id) else {
            return Undo::Nothing;
        };
        if instance.bindings.get(&binding_id).is_some() {
            return Undo::Nothing;
        }
        instance
            .bindings
            .insert(binding_id.clone().into_boxed_str(), binding);
        Undo::RemoveBinding(instance_id, binding_id)
    }

    fn unbind(&mut self, instance_id: String, binding_id: String) -> Undo {
        let removed = self
            .instances
            .get_mut(&instance_id)
            .and_then(|instance| instance.bindings.remove(&binding_id));
        match removed {
            Some(binding) => {
                Undo::RestoreBinding(instance_id, binding_id.into_boxed_str(), Box::new(binding))
            }
            None => Undo::Nothing,
        }
    }

    /// Counts a message and keeps its preview (bounded again here: older journals held whole
    /// messages).
    fn count_message(&mut self, instance_id: String, preview: String) -> Undo {
        let Some(instance) = self.instances.get_mut(&instance_id) else {
            return Undo::Nothing;
        };
        let pushed_out = if instance.recent_messages.len() >= RECENT_MESSAGES {
            instance.recent_messages.pop_front()
        } else {
            None
        };
        if instance.recent_messages.capacity() == 0 {
            instance.recent_messages.reserve_exact(RECENT_MESSAGES);
        }
        instance
            .recent_messages
            .push_back(preview_of(&preview).into_boxed_str());
        instance.message_count += 1;
        Undo::UncountMessage {
            instance_id,
            pushed_out,
        }
    }
}

/// Changes for the unit tests of the service and of its journal (whose tenant, in its
/// tests, is this service's state).
#[cfg(test)]
pub(crate) mod test_changes {
    use super::*;

    pub(crate) fn provision(instance_id: &str) -> Change {
        Change::Provision {
            instance_id: instance_id.into(),
            attributes: Some(InstanceAttributes {
                service_id: "echo_service".into(),
                plan_id: "big_0001".into(),
                organization_guid: "o".into(),
                space_guid: "s".into(),
                context: None,
                parameters: None,
                maintenance_info: None,
            }),
            dashboard_token: format!("token-{instance_id}"),
        }
    }

    /// A password with a newline, quotes and a non-ASCII letter, for the journal's framing.
    pub(crate) fn bind(instance_id: &str, binding_id: &str) -> Change {
        Change::Bind {
            instance_id: instance_id.into(),
            binding_id: binding_id.into(),
            attributes: None,
            username: format!("user-{binding_id}"),
            password: "secret \n \"quoted\" ü".into(),
            lifetime: None,
        }
    }

    /// A message sent to `instance_id`, as its call records it.
    pub(crate) fn message(instance_id: &str, text: &str) -> Change {
        Change::Message {
            instance_id: instance_id.into(),
            preview: preview_of(text),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_changes::{bind, message, provision};
    use super::*;

    fn as_json(state: &EchoState) -> serde_json::Value {
        serde_json::to_value(state).expect("state serialises")
    }

    #[test]
    fn undoing_changes_newest_first_restores_the_state() {
        let mut state = EchoState::default();
        for change in [provision("kept"), bind("kept", "b1")] {
            state.apply(change);
        }
        for i in 0..RECENT_MESSAGES {
            state.apply(message("kept", &format!("old {i}")));
        }
        let before = as_json(&state);
        let update = InstanceUpdate {
            plan_id: Some("small_0001".into()),
            ..Default::default()
        };
        let changes = vec![
            provision("new"),
            bind("new", "b"),
            message("kept", "pushes the oldest preview out"),
            Change::Update {
                instance_id: "kept".into(),
                update,
            },
            Change::Unbind {
                instance_id: "kept".into(),
                binding_id: "b1".into(),
            },
            Change::Deprovision {
                instance_id: "kept".into(),
            },
            provision("new"), // already there: changes nothing
        ];
        let undos: Vec<Undo> = changes
            .into_iter()
            .map(|change| state.apply_undoable(change))
            .collect();
        assert_ne!(as_json(&state), before);
        for undo in undos.into_iter().rev() {
            state.undo(undo);
        }
        assert_eq!(as_json(&state), before);
    }
}
