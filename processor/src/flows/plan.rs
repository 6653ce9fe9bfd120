//! The plan of `weir flows plan` / `weir flows apply`: what a validated manifest needs
//! created or removed, against what exists, and why anything is kept.
//!
//! What exists ([`ExistingState`]) is the cluster's topics with their partition counts
//! and the manifest as last applied. Tables are not visible from outside the processors,
//! so the applied manifest is what says which tables exist. The plan creates, for every
//! model version, its ingestion topic (with [`PlanOptions::partitions`]) and table; for
//! every flow, its input and output topics with the partition count of its source's
//! ingestion topic (as it exists, or as it will be created), and the flow itself, with
//! its initial load when it has one. A desired topic that already exists, even one weir
//! did not create, is used as it is.
//!
//! Removals: a flow that left the manifest is stopped and forgotten. Data (ingestion
//! topics, tables, and the removed flows' input and output topics, which may hold records
//! not yet transformed or copied) is deleted only with
//! [`PlanOptions::allow_data_removal`]; otherwise the plan lists it as kept, with the
//! reason. With it, the state the runtime keeps beside the data goes too
//! ([`Plan::remove_state`]): a removed model version's initial load progress and the
//! timers and parked outputs of its sub-topology, and those of a removed flow's
//! sub-topologies, whose commit markers also hold their positions in the deleted topics.
//! A model version declared again after that starts afresh, its loads included, instead
//! of resuming progress that counts offsets of a topic that no longer exists. Only what
//! the applied manifest declared is ever removed: other topics of the cluster are not
//! weir's.
//!
//! A flow is matched by name. If its source and target are unchanged, a different
//! transform, kind or `initial_load` is an update (the flow restarts with the new
//! transform; an initial load runs only when a flow is created). If its source or target
//! changed, it is a different flow under an old name: the old one is removed and the new
//! one created. A model version whose declaration differs from the applied one (fields,
//! key) is a conflict: records already in its topic and table were checked against the
//! old declaration; a change is a new version and a migration flow. A flow topic that
//! exists with a partition count other than its source's is a conflict too, since a key
//! must land in the same partition number along the whole flow. A plan with conflicts
//! must not be applied.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use weir_proto::flow::FlowKind;
use weir_proto::{DataModel, Flow, FlowsManifest};

use super::manifest::{ValidManifest, flow_topics, needs_initial_load};
use super::naming::{FlowTopics, ModelVersion};
use super::topology::{flow_state_stores, model_state_stores};

/// What exists before the plan is applied.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExistingState {
    /// Every topic of the cluster, with its partition count.
    pub topics: BTreeMap<String, i32>,
    /// The manifest as last applied; `None` before the first apply.
    pub applied: Option<FlowsManifest>,
}

/// How a plan is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlanOptions {
    /// Partitions of a new ingestion topic.
    pub partitions: i32,
    /// Whether topics and tables that left the manifest are deleted (else kept).
    pub allow_data_removal: bool,
}

/// What a topic is for.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum TopicPurpose {
    /// The ingestion topic of a model version.
    Ingestion(ModelVersion),
    /// The input topic of the named flow.
    FlowInput(String),
    /// The output topic of the named flow.
    FlowOutput(String),
}

impl fmt::Display for TopicPurpose {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ingestion(model) => write!(f, "ingestion topic of {model}"),
            Self::FlowInput(flow) => write!(f, "input topic of flow {flow}"),
            Self::FlowOutput(flow) => write!(f, "output topic of flow {flow}"),
        }
    }
}

/// A topic the plan creates or removes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicChange {
    /// Topic name.
    pub name: String,
    /// Partition count (to create with, or as it exists).
    pub partitions: i32,
    /// What it is for.
    pub purpose: TopicPurpose,
}

/// A table the plan creates or removes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableChange {
    /// Store name.
    pub name: String,
    /// The model version it holds.
    pub model: ModelVersion,
}

/// Internal state (a store's changelog) the plan deletes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateChange {
    /// Store name; its changelog is `{cluster}_{store}-changelog`.
    pub store: String,
    /// What goes with it: `model UserActivity 0.0` or `flow parse`.
    pub owner: String,
}

/// A flow the plan creates.
#[derive(Debug, Clone, PartialEq)]
pub struct FlowCreation {
    /// The flow as declared.
    pub flow: Flow,
    /// Whether its source table is loaded into its input topic before live records.
    pub initial_load: bool,
}

/// A flow whose transform, kind or `initial_load` changed.
#[derive(Debug, Clone, PartialEq)]
pub struct FlowUpdate {
    /// As applied.
    pub before: Flow,
    /// As declared now.
    pub after: Flow,
}

/// Something that stays although the manifest no longer asks for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kept {
    /// What stays, such as `topic UserActivity_0_0`.
    pub what: String,
    /// Why.
    pub why: String,
}

/// Why the plan cannot be applied as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// What is in conflict.
    pub what: String,
    /// The conflict.
    pub why: String,
}

/// The changes from what exists to what a manifest declares, each list in name order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    /// Topics to create.
    pub create_topics: Vec<TopicChange>,
    /// Tables to create.
    pub create_tables: Vec<TableChange>,
    /// Flows to create (after their topics and tables).
    pub create_flows: Vec<FlowCreation>,
    /// Flows to restart with a new definition.
    pub update_flows: Vec<FlowUpdate>,
    /// Flows to stop and forget (before any topic or table is removed).
    pub remove_flows: Vec<Flow>,
    /// Topics to delete (only with `allow_data_removal`).
    pub remove_topics: Vec<TopicChange>,
    /// Tables to delete (only with `allow_data_removal`).
    pub remove_tables: Vec<TableChange>,
    /// Internal state of removed model versions and flows to delete (only with
    /// `allow_data_removal`).
    pub remove_state: Vec<StateChange>,
    /// What stays although it left the manifest.
    pub kept: Vec<Kept>,
    /// What prevents applying the plan.
    pub conflicts: Vec<Conflict>,
}

impl Plan {
    /// Whether the plan changes nothing.
    pub fn is_empty(&self) -> bool {
        self.create_topics.is_empty()
            && self.create_tables.is_empty()
            && self.create_flows.is_empty()
            && self.update_flows.is_empty()
            && self.remove_flows.is_empty()
            && self.remove_topics.is_empty()
            && self.remove_tables.is_empty()
            && self.remove_state.is_empty()
    }

    /// Deletes `stores`, the internal state of `owner` (`model UserActivity 0.0`, `flow
    /// parse`).
    fn remove_state_of(&mut self, owner: &str, stores: Vec<String>) {
        self.remove_state
            .extend(stores.into_iter().map(|store| StateChange {
                store,
                owner: owner.to_owned(),
            }));
    }

    /// Whether the plan may be applied: it has no conflicts.
    pub fn is_applicable(&self) -> bool {
        self.conflicts.is_empty()
    }
}

/// The plan that takes `existing` to what `manifest` declares.
pub fn plan(manifest: &ValidManifest, existing: &ExistingState, options: PlanOptions) -> Plan {
    let mut plan = Plan::default();
    let applied = existing.applied.as_ref();

    // Models: topics and tables.
    let applied_models: BTreeMap<ModelVersion, &DataModel> =
        applied.map(|m| models_of(m).collect()).unwrap_or_default();
    let mut partitions_of: BTreeMap<ModelVersion, i32> = BTreeMap::new();
    for (id, model) in manifest.models() {
        let topic = id.ingestion_topic();
        let partitions = match existing.topics.get(&topic) {
            Some(&n) => n,
            None => {
                plan.create_topics.push(TopicChange {
                    name: topic,
                    partitions: options.partitions,
                    purpose: TopicPurpose::Ingestion(id.clone()),
                });
                options.partitions
            }
        };
        partitions_of.insert(id.clone(), partitions);
        match applied_models.get(id) {
            None => plan.create_tables.push(TableChange {
                name: id.table(),
                model: id.clone(),
            }),
            Some(before) if !same_declaration(before, model) => plan.conflicts.push(Conflict {
                what: format!("model {id}"),
                why: "its fields or key differ from the applied declaration; declare a new \
                      version and a migration flow instead"
                    .to_owned(),
            }),
            Some(_) => {}
        }
    }
    for id in applied_models.keys() {
        if partitions_of.contains_key(id) {
            continue;
        }
        let why = format!("model {id} left the manifest");
        let topic = id.ingestion_topic();
        if let Some(&partitions) = existing.topics.get(&topic) {
            remove_topic(
                &mut plan,
                options,
                TopicChange {
                    name: topic,
                    partitions,
                    purpose: TopicPurpose::Ingestion(id.clone()),
                },
                &why,
            );
        }
        let table = TableChange {
            name: id.table(),
            model: id.clone(),
        };
        if options.allow_data_removal {
            plan.remove_tables.push(table);
            plan.remove_state_of(&format!("model {id}"), model_state_stores(id));
        } else {
            plan.kept.push(Kept {
                what: format!("table {}", table.name),
                why: keep_reason(&why),
            });
        }
    }

    // Flows.
    let applied_flows: BTreeMap<&str, &Flow> = applied
        .map(|m| m.flows.iter().map(|f| (f.name.as_str(), f)).collect())
        .unwrap_or_default();
    let mut desired_topics = BTreeSet::new();
    for flow in manifest.flows() {
        let Some(topics) = flow_topics(flow) else {
            continue;
        };
        let partitions = partitions_of
            .get(&topics.source)
            .copied()
            .unwrap_or(options.partitions);
        for (name, purpose) in flow_topic_purposes(flow, &topics) {
            desired_topics.insert(name.clone());
            match existing.topics.get(&name) {
                None => plan.create_topics.push(TopicChange {
                    name,
                    partitions,
                    purpose,
                }),
                Some(&n) if n != partitions => plan.conflicts.push(Conflict {
                    what: format!("topic {name}"),
                    why: format!(
                        "it has {n} partitions, but flow {} needs {partitions}, as many as \
                         its source {}",
                        flow.name,
                        topics.source.ingestion_topic()
                    ),
                }),
                Some(_) => {}
            }
        }
        let before = applied_flows.get(flow.name.as_str()).copied();
        match before {
            Some(before) if flow_topics(before).as_ref() == Some(&topics) => {
                if before != flow {
                    plan.update_flows.push(FlowUpdate {
                        before: before.clone(),
                        after: flow.clone(),
                    });
                }
            }
            _ => {
                if let Some(before) = before {
                    plan.remove_flows.push(before.clone());
                }
                plan.create_flows.push(FlowCreation {
                    flow: flow.clone(),
                    initial_load: needs_initial_load(flow),
                });
            }
        }
    }
    let desired_names: BTreeSet<&str> = manifest.flows().iter().map(|f| f.name.as_str()).collect();
    for (name, flow) in &applied_flows {
        if !desired_names.contains(name) {
            plan.remove_flows.push((*flow).clone());
            if options.allow_data_removal {
                plan.remove_state_of(&format!("flow {name}"), flow_state_stores(flow));
            }
        }
    }
    for flow in plan.remove_flows.clone() {
        let Some(topics) = flow_topics(&flow) else {
            continue;
        };
        for (name, purpose) in flow_topic_purposes(&flow, &topics) {
            if desired_topics.contains(&name) {
                continue;
            }
            if let Some(&partitions) = existing.topics.get(&name) {
                let why = format!("flow {} is removed", flow.name);
                remove_topic(
                    &mut plan,
                    options,
                    TopicChange {
                        name,
                        partitions,
                        purpose,
                    },
                    &why,
                );
            }
        }
    }

    plan.create_topics.sort_by(|a, b| a.name.cmp(&b.name));
    plan.create_tables.sort_by(|a, b| a.name.cmp(&b.name));
    plan.create_flows
        .sort_by(|a, b| a.flow.name.cmp(&b.flow.name));
    plan.update_flows
        .sort_by(|a, b| a.after.name.cmp(&b.after.name));
    plan.remove_flows.sort_by(|a, b| a.name.cmp(&b.name));
    plan.remove_topics.sort_by(|a, b| a.name.cmp(&b.name));
    plan.remove_tables.sort_by(|a, b| a.name.cmp(&b.name));
    plan.remove_state.sort_by(|a, b| a.store.cmp(&b.store));
    plan.kept.sort_by(|a, b| a.what.cmp(&b.what));
    plan.conflicts.sort_by(|a, b| a.what.cmp(&b.what));
    plan
}

fn models_of(manifest: &FlowsManifest) -> impl Iterator<Item = (ModelVersion, &DataModel)> {
    manifest.data_models.iter().filter_map(|model| {
        let version = model.version.as_ref()?;
        Some((ModelVersion::new(model.name.clone(), version), model))
    })
}

fn same_declaration(a: &DataModel, b: &DataModel) -> bool {
    a.fields == b.fields && a.key_field == b.key_field
}

fn flow_topic_purposes(flow: &Flow, topics: &FlowTopics) -> [(String, TopicPurpose); 2] {
    [
        (topics.input(), TopicPurpose::FlowInput(flow.name.clone())),
        (topics.output(), TopicPurpose::FlowOutput(flow.name.clone())),
    ]
}

fn keep_reason(why: &str) -> String {
    format!("{why}; its data is deleted only with allow_data_removal")
}

fn remove_topic(plan: &mut Plan, options: PlanOptions, topic: TopicChange, why: &str) {
    if options.allow_data_removal {
        plan.remove_topics.push(topic);
    } else {
        plan.kept.push(Kept {
            what: format!("topic {}", topic.name),
            why: keep_reason(why),
        });
    }
}

fn describe_flow(flow: &Flow) -> String {
    let kind = if flow.kind == FlowKind::Migration as i32 {
        "migration"
    } else {
        "regular"
    };
    match flow_topics(flow) {
        Some(t) => format!(
            "{kind} {} -> {}, transform {}",
            t.source, t.target, flow.transform
        ),
        None => format!("{kind}, transform {}", flow.transform),
    }
}

impl fmt::Display for Plan {
    /// One line per change: `+` create, `~` update, `-` remove, `=` kept, `!` conflict,
    /// then a summary line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for t in &self.create_topics {
            writeln!(
                f,
                "+ topic {} ({} partitions): {}",
                t.name, t.partitions, t.purpose
            )?;
        }
        for t in &self.create_tables {
            writeln!(f, "+ table {}: table of {}", t.name, t.model)?;
        }
        for c in &self.create_flows {
            let load = if c.initial_load {
                ", with initial load"
            } else {
                ""
            };
            writeln!(
                f,
                "+ flow {}: {}{load}",
                c.flow.name,
                describe_flow(&c.flow)
            )?;
        }
        for u in &self.update_flows {
            writeln!(
                f,
                "~ flow {}: {} (was {})",
                u.after.name,
                describe_flow(&u.after),
                describe_flow(&u.before)
            )?;
        }
        for flow in &self.remove_flows {
            writeln!(f, "- flow {}: {}", flow.name, describe_flow(flow))?;
        }
        for t in &self.remove_topics {
            writeln!(
                f,
                "- topic {} ({} partitions): {}",
                t.name, t.partitions, t.purpose
            )?;
        }
        for t in &self.remove_tables {
            writeln!(f, "- table {}: table of {}", t.name, t.model)?;
        }
        for s in &self.remove_state {
            writeln!(f, "- state {}: of removed {}", s.store, s.owner)?;
        }
        for k in &self.kept {
            writeln!(f, "= keep {}: {}", k.what, k.why)?;
        }
        for c in &self.conflicts {
            writeln!(f, "! conflict on {}: {}", c.what, c.why)?;
        }
        if self.is_empty() && self.conflicts.is_empty() {
            write!(f, "No changes.")?;
        } else {
            write!(
                f,
                "{} to create, {} to update, {} to remove, {} kept, {} conflicts",
                self.create_topics.len() + self.create_tables.len() + self.create_flows.len(),
                self.update_flows.len(),
                self.remove_flows.len()
                    + self.remove_topics.len()
                    + self.remove_tables.len()
                    + self.remove_state.len(),
                self.kept.len(),
                self.conflicts.len()
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flows::manifest::validate;
    use weir_proto::data_model_field::FieldType;
    use weir_proto::{DataModelField, DataModelVersion};

    fn model(name: &str, major: u32, minor: u32) -> DataModel {
        DataModel {
            name: name.into(),
            version: Some(DataModelVersion { major, minor }),
            fields: vec![DataModelField {
                name: "id".into(),
                field_type: FieldType::String as i32,
                required: true,
            }],
            key_field: "id".into(),
        }
    }

    fn flow(name: &str, kind: FlowKind, from: (&str, u32, u32), to: (&str, u32, u32)) -> Flow {
        Flow {
            name: name.into(),
            source_model: from.0.into(),
            source_version: Some(DataModelVersion {
                major: from.1,
                minor: from.2,
            }),
            target_model: to.0.into(),
            target_version: Some(DataModelVersion {
                major: to.1,
                minor: to.2,
            }),
            kind: kind as i32,
            transform: "t".into(),
            initial_load: false,
        }
    }

    /// UserActivity 0.0 and 0.1 with a migration, ParsedActivity 0.1 fed by a regular
    /// flow from UserActivity 0.1.
    fn manifest() -> FlowsManifest {
        FlowsManifest {
            data_models: vec![
                model("UserActivity", 0, 0),
                model("UserActivity", 0, 1),
                model("ParsedActivity", 0, 1),
            ],
            flows: vec![
                flow(
                    "migrate",
                    FlowKind::Migration,
                    ("UserActivity", 0, 0),
                    ("UserActivity", 0, 1),
                ),
                flow(
                    "parse",
                    FlowKind::Regular,
                    ("UserActivity", 0, 1),
                    ("ParsedActivity", 0, 1),
                ),
            ],
        }
    }

    fn valid(manifest: FlowsManifest) -> ValidManifest {
        validate(manifest, None).expect("valid manifest")
    }

    const KEEP: PlanOptions = PlanOptions {
        partitions: 3,
        allow_data_removal: false,
    };
    const REMOVE: PlanOptions = PlanOptions {
        partitions: 3,
        allow_data_removal: true,
    };

    fn names<T>(items: &[T], name: impl Fn(&T) -> &str) -> Vec<&str> {
        items.iter().map(name).collect()
    }

    /// What exists after `plan` was applied on top of `existing` with `manifest`.
    fn applied(existing: &ExistingState, plan: &Plan, manifest: FlowsManifest) -> ExistingState {
        let mut topics = existing.topics.clone();
        for t in &plan.create_topics {
            topics.insert(t.name.clone(), t.partitions);
        }
        for t in &plan.remove_topics {
            topics.remove(&t.name);
        }
        ExistingState {
            topics,
            applied: Some(manifest),
        }
    }

    #[test]
    fn a_first_apply_creates_everything_with_the_sources_partitions() {
        let existing = ExistingState {
            // UserActivity 0.1 already exists (made by hand) with 6 partitions.
            topics: BTreeMap::from([("UserActivity_0_1".to_owned(), 6)]),
            applied: None,
        };
        let plan = plan(&valid(manifest()), &existing, KEEP);
        let topics: Vec<(&str, i32)> = plan
            .create_topics
            .iter()
            .map(|t| (t.name.as_str(), t.partitions))
            .collect();
        assert_eq!(
            topics,
            [
                ("ParsedActivity_0_1", 3),
                ("UserActivity_0_0", 3),
                ("UserActivity_0_0_UserActivity_0_1_input", 3),
                ("UserActivity_0_0_UserActivity_0_1_output", 3),
                ("UserActivity_0_1_ParsedActivity_0_1_input", 6),
                ("UserActivity_0_1_ParsedActivity_0_1_output", 6),
            ]
        );
        assert_eq!(
            names(&plan.create_tables, |t| &t.name),
            ["ParsedActivity_0_1", "UserActivity_0_0", "UserActivity_0_1"]
        );
        let flows: Vec<(&str, bool)> = plan
            .create_flows
            .iter()
            .map(|c| (c.flow.name.as_str(), c.initial_load))
            .collect();
        assert_eq!(flows, [("migrate", true), ("parse", false)]);
        assert!(plan.update_flows.is_empty() && plan.remove_flows.is_empty());
        assert!(plan.kept.is_empty() && plan.is_applicable());
        assert_eq!(
            plan.to_string(),
            "\
+ topic ParsedActivity_0_1 (3 partitions): ingestion topic of ParsedActivity 0.1
+ topic UserActivity_0_0 (3 partitions): ingestion topic of UserActivity 0.0
+ topic UserActivity_0_0_UserActivity_0_1_input (3 partitions): input topic of flow migrate
+ topic UserActivity_0_0_UserActivity_0_1_output (3 partitions): output topic of flow migrate
+ topic UserActivity_0_1_ParsedActivity_0_1_input (6 partitions): input topic of flow parse
+ topic UserActivity_0_1_ParsedActivity_0_1_output (6 partitions): output topic of flow parse
+ table ParsedActivity_0_1: table of ParsedActivity 0.1
+ table UserActivity_0_0: table of UserActivity 0.0
+ table UserActivity_0_1: table of UserActivity 0.1
+ flow migrate: migration UserActivity 0.0 -> UserActivity 0.1, transform t, with initial load
+ flow parse: regular UserActivity 0.1 -> ParsedActivity 0.1, transform t
11 to create, 0 to update, 0 to remove, 0 kept, 0 conflicts"
        );

        // Applying it leaves nothing to do.
        let after = applied(&existing, &plan, manifest());
        let again = super::plan(&valid(manifest()), &after, KEEP);
        assert!(again.is_empty(), "{again}");
        assert_eq!(again.to_string(), "No changes.");
    }

    #[test]
    fn removing_a_flow_keeps_its_topics_unless_data_removal_is_allowed() {
        let first = super::plan(&valid(manifest()), &ExistingState::default(), KEEP);
        let existing = applied(&ExistingState::default(), &first, manifest());
        let mut without_parse = manifest();
        without_parse.flows.pop();

        let kept = super::plan(&valid(without_parse.clone()), &existing, KEEP);
        assert_eq!(names(&kept.remove_flows, |f| &f.name), ["parse"]);
        assert!(kept.remove_topics.is_empty() && kept.remove_tables.is_empty());
        assert!(kept.create_topics.is_empty() && kept.create_flows.is_empty());
        assert_eq!(
            kept.to_string(),
            "\
- flow parse: regular UserActivity 0.1 -> ParsedActivity 0.1, transform t
= keep topic UserActivity_0_1_ParsedActivity_0_1_input: flow parse is removed; its data is deleted only with allow_data_removal
= keep topic UserActivity_0_1_ParsedActivity_0_1_output: flow parse is removed; its data is deleted only with allow_data_removal
0 to create, 0 to update, 1 to remove, 2 kept, 0 conflicts"
        );

        let removed = super::plan(&valid(without_parse), &existing, REMOVE);
        assert_eq!(names(&removed.remove_flows, |f| &f.name), ["parse"]);
        assert_eq!(
            names(&removed.remove_topics, |t| &t.name),
            [
                "UserActivity_0_1_ParsedActivity_0_1_input",
                "UserActivity_0_1_ParsedActivity_0_1_output"
            ]
        );
        assert!(removed.kept.is_empty());
    }

    #[test]
    fn removing_a_model_deletes_its_topic_and_table_only_when_allowed() {
        let first = super::plan(&valid(manifest()), &ExistingState::default(), KEEP);
        let mut existing = applied(&ExistingState::default(), &first, manifest());
        // A topic weir never declared is never touched.
        existing.topics.insert("someone-elses".to_owned(), 1);
        let mut smaller = manifest();
        smaller.data_models.retain(|m| m.name != "ParsedActivity");
        smaller.flows.retain(|f| f.name != "parse");

        let kept = super::plan(&valid(smaller.clone()), &existing, KEEP);
        assert_eq!(
            names(&kept.kept, |k| &k.what),
            [
                "table ParsedActivity_0_1",
                "topic ParsedActivity_0_1",
                "topic UserActivity_0_1_ParsedActivity_0_1_input",
                "topic UserActivity_0_1_ParsedActivity_0_1_output",
            ]
        );
        assert_eq!(
            kept.kept[1].why,
            "model ParsedActivity 0.1 left the manifest; its data is deleted only with allow_data_removal"
        );
        assert!(kept.remove_topics.is_empty() && kept.remove_tables.is_empty());

        let removed = super::plan(&valid(smaller), &existing, REMOVE);
        assert_eq!(
            names(&removed.remove_topics, |t| &t.name),
            [
                "ParsedActivity_0_1",
                "UserActivity_0_1_ParsedActivity_0_1_input",
                "UserActivity_0_1_ParsedActivity_0_1_output",
            ]
        );
        assert_eq!(
            names(&removed.remove_tables, |t| &t.name),
            ["ParsedActivity_0_1"]
        );
        assert_eq!(names(&removed.remove_flows, |f| &f.name), ["parse"]);
        assert!(removed.kept.is_empty());
        // The model's and the flow's internal state goes with them: the initial load
        // progress and the runtime's timers and parked outputs of each sub-topology.
        assert_eq!(
            names(&removed.remove_state, |s| &s.store),
            [
                "ParsedActivity_0_1-initial-load",
                "flows-copy.parse-parked",
                "flows-copy.parse-timers",
                "flows-flow.parse-parked",
                "flows-flow.parse-timers",
                "flows-model.ParsedActivity_0_1-parked",
                "flows-model.ParsedActivity_0_1-timers",
            ]
        );
        assert!(kept.remove_state.is_empty(), "kept without the flag");
    }

    #[test]
    fn removing_a_flow_source_with_data_removal_lists_its_load_progress() {
        let first = super::plan(&valid(manifest()), &ExistingState::default(), KEEP);
        let existing = applied(&ExistingState::default(), &first, manifest());
        let mut without_0_0 = manifest();
        without_0_0
            .data_models
            .retain(|m| m.version != Some(DataModelVersion { major: 0, minor: 0 }));
        without_0_0.flows.retain(|f| f.name != "migrate");

        let removed = super::plan(&valid(without_0_0.clone()), &existing, REMOVE);
        assert_eq!(
            removed.to_string(),
            "\
- flow migrate: migration UserActivity 0.0 -> UserActivity 0.1, transform t
- topic UserActivity_0_0 (3 partitions): ingestion topic of UserActivity 0.0
- topic UserActivity_0_0_UserActivity_0_1_input (3 partitions): input topic of flow migrate
- topic UserActivity_0_0_UserActivity_0_1_output (3 partitions): output topic of flow migrate
- table UserActivity_0_0: table of UserActivity 0.0
- state UserActivity_0_0-initial-load: of removed model UserActivity 0.0
- state flows-flow.migrate-parked: of removed flow migrate
- state flows-flow.migrate-timers: of removed flow migrate
- state flows-model.UserActivity_0_0-parked: of removed model UserActivity 0.0
- state flows-model.UserActivity_0_0-timers: of removed model UserActivity 0.0
0 to create, 0 to update, 10 to remove, 0 kept, 0 conflicts"
        );

        // Declared again: created afresh, its migration with a load of its own.
        let after = applied(&existing, &removed, without_0_0);
        let again = super::plan(&valid(manifest()), &after, KEEP);
        assert_eq!(
            names(&again.create_tables, |t| &t.name),
            ["UserActivity_0_0"]
        );
        let flows: Vec<(&str, bool)> = again
            .create_flows
            .iter()
            .map(|c| (c.flow.name.as_str(), c.initial_load))
            .collect();
        assert_eq!(flows, [("migrate", true)]);
        assert!(again.remove_state.is_empty());
    }

    #[test]
    fn flows_are_updated_in_place_or_replaced_when_their_models_change() {
        let first = super::plan(&valid(manifest()), &ExistingState::default(), KEEP);
        let existing = applied(&ExistingState::default(), &first, manifest());

        let mut new_transform = manifest();
        new_transform.flows[1].transform = "parse_v2".into();
        let plan = super::plan(&valid(new_transform), &existing, KEEP);
        assert_eq!(names(&plan.update_flows, |u| &u.after.name), ["parse"]);
        assert!(plan.create_flows.is_empty() && plan.remove_flows.is_empty());
        assert!(plan.create_topics.is_empty() && plan.kept.is_empty());
        assert!(plan.to_string().starts_with(
            "~ flow parse: regular UserActivity 0.1 -> ParsedActivity 0.1, transform parse_v2 (was regular UserActivity 0.1 -> ParsedActivity 0.1, transform t)\n"
        ), "{plan}");

        // `parse` now reads UserActivity 0.0: a new flow under the old name.
        let mut moved = manifest();
        moved.flows[1].source_version = Some(DataModelVersion { major: 0, minor: 0 });
        let plan = super::plan(&valid(moved), &existing, KEEP);
        assert_eq!(names(&plan.remove_flows, |f| &f.name), ["parse"]);
        assert_eq!(names(&plan.create_flows, |c| &c.flow.name), ["parse"]);
        assert_eq!(
            names(&plan.create_topics, |t| &t.name),
            [
                "UserActivity_0_0_ParsedActivity_0_1_input",
                "UserActivity_0_0_ParsedActivity_0_1_output"
            ]
        );
        assert_eq!(
            names(&plan.kept, |k| &k.what),
            [
                "topic UserActivity_0_1_ParsedActivity_0_1_input",
                "topic UserActivity_0_1_ParsedActivity_0_1_output"
            ]
        );
    }

    #[test]
    fn changed_models_and_mismatched_partitions_are_conflicts() {
        let first = super::plan(&valid(manifest()), &ExistingState::default(), KEEP);
        let mut existing = applied(&ExistingState::default(), &first, manifest());
        existing
            .topics
            .insert("UserActivity_0_1_ParsedActivity_0_1_output".to_owned(), 12);
        let mut changed = manifest();
        changed.data_models[2].fields.push(DataModelField {
            name: "extra".into(),
            field_type: FieldType::Json as i32,
            required: false,
        });
        let plan = super::plan(&valid(changed), &existing, KEEP);
        assert!(!plan.is_applicable());
        assert!(plan.is_empty());
        assert_eq!(
            plan.to_string(),
            "\
! conflict on model ParsedActivity 0.1: its fields or key differ from the applied declaration; declare a new version and a migration flow instead
! conflict on topic UserActivity_0_1_ParsedActivity_0_1_output: it has 12 partitions, but flow parse needs 3, as many as its source UserActivity_0_1
0 to create, 0 to update, 0 to remove, 0 kept, 2 conflicts"
        );
    }
}
