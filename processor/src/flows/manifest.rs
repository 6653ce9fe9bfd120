//! The flows manifest: the one file (YAML or JSON, the proto3 JSON mapping of
//! `FlowsManifest`) that declares every data model and flow, and the rules it must
//! keep before anything is planned from it.
//!
//! [`validate`] reports every problem at once, each naming its model or flow. The rules:
//! - A model name is a valid model name ([`naming::is_valid_model_name`]); a model has a
//!   version, and a name and version are declared once. Field names are non-empty and
//!   unique, field types known. The key field is declared, `required: true`, and of
//!   type `STRING` or `INT` (the key is its value as text, see [`super::record`]).
//! - Generated topic names fit Kafka's 249 characters.
//! - A flow name is a valid topic-name part, unique; its transform name is non-empty
//!   and, when the program's transforms are given, registered; its source and target
//!   are declared model versions.
//! - A migration flow goes from a model version to "N+1": the next declared version of
//!   the same model, in `(major, minor)` order (0.9 to 1.0 or 0.0 to 0.1 if those are
//!   declared, never 0.0 to 0.2 while 0.1 is declared). A version therefore has at most
//!   one migration in and one out, and migrations chain version by version. A migration
//!   flow always has an initial load, whatever its `initial_load` says.
//! - A regular flow goes between two different models, and regular flows do not form a
//!   cycle (a flow's output is copied to its target's ingestion topic, which feeds the
//!   target's flows; a cycle would copy records forever).
//! - No two flows share a source and target, since they would share input and output
//!   topics.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use weir_proto::data_model_field::FieldType;
use weir_proto::flow::FlowKind;
use weir_proto::{DataModel, Flow, FlowsManifest};

use super::naming::{self, FlowTopics, MAX_TOPIC_NAME_LEN, ModelVersion};
use super::transform::TransformRegistry;
use crate::spec_file::{SpecFormat, TextError, decode_text};
use crate::topics::is_valid_name;

const MANIFEST_MESSAGE: &str = "weir.FlowsManifest";

/// A manifest file that could not be read or parsed.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The file could not be read.
    #[error("cannot read {}: {error}", path.display())]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    /// The text is not a `FlowsManifest`.
    #[error("{origin}: not a valid flows manifest ({format}): {message}")]
    Parse {
        origin: String,
        format: &'static str,
        message: String,
    },
    /// The built-in schemas could not be loaded: a bug in weir, not in the file.
    #[error("weir's built-in schemas cannot be read: {0}")]
    Schema(String),
}

/// Reads the manifest file at `path`: YAML for `.yaml`/`.yml`, JSON otherwise. The
/// result is parsed, not yet validated.
pub fn read(path: &Path) -> Result<FlowsManifest, ManifestError> {
    let text = std::fs::read_to_string(path).map_err(|error| ManifestError::Read {
        path: path.to_owned(),
        error,
    })?;
    parse(
        &text,
        SpecFormat::of_path(path),
        &path.display().to_string(),
    )
}

/// Parses `text` as a manifest; `origin` names the text in errors. Field names may be
/// camelCase or as in the schema, enums are written by name.
pub fn parse(text: &str, format: SpecFormat, origin: &str) -> Result<FlowsManifest, ManifestError> {
    let invalid = |message: String| ManifestError::Parse {
        origin: origin.to_owned(),
        format: format.name(),
        message,
    };
    let message = decode_text(MANIFEST_MESSAGE, text, format).map_err(|error| match error {
        TextError::Schema(message) => ManifestError::Schema(message),
        TextError::Invalid(message) => invalid(message),
    })?;
    message
        .transcode_to()
        .map_err(|e: prost::DecodeError| invalid(e.to_string()))
}

/// What a validation problem is about.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Subject {
    /// A data model: its name and, when it has one, its version as `major.minor`.
    Model { name: String, version: String },
    /// A flow, by name.
    Flow(String),
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Model { name, version } if version.is_empty() => write!(f, "model {name:?}"),
            Self::Model { name, version } => write!(f, "model {name:?} {version}"),
            Self::Flow(name) => write!(f, "flow {name:?}"),
        }
    }
}

/// One broken rule of a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The model or flow that breaks it.
    pub subject: Subject,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.subject, self.message)
    }
}

/// Every problem of a manifest, in the order models and flows are declared.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct InvalidManifest {
    /// The problems, at least one.
    pub problems: Vec<Problem>,
}

impl fmt::Display for InvalidManifest {
    /// `invalid flows manifest (2 problems):` and one problem per line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        write!(
            f,
            "invalid flows manifest ({n} problem{}):",
            if n == 1 { "" } else { "s" }
        )?;
        for problem in &self.problems {
            write!(f, "\n  {problem}")?;
        }
        Ok(())
    }
}

/// A manifest that passed [`validate`], with its models looked up by name and version.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidManifest {
    manifest: FlowsManifest,
    models: BTreeMap<ModelVersion, usize>,
}

impl ValidManifest {
    /// The manifest as declared.
    pub fn manifest(&self) -> &FlowsManifest {
        &self.manifest
    }

    /// The manifest, given back.
    pub fn into_inner(self) -> FlowsManifest {
        self.manifest
    }

    /// Every model version, in name and version order, with its declaration.
    pub fn models(&self) -> impl Iterator<Item = (&ModelVersion, &DataModel)> {
        self.models
            .iter()
            .map(|(id, &i)| (id, &self.manifest.data_models[i]))
    }

    /// The model `id`, if declared.
    pub fn model(&self, id: &ModelVersion) -> Option<&DataModel> {
        self.models.get(id).map(|&i| &self.manifest.data_models[i])
    }

    /// Every flow, in declaration order.
    pub fn flows(&self) -> &[Flow] {
        &self.manifest.flows
    }
}

/// The model versions a flow reads and writes; `None` where a version is missing.
pub fn flow_topics(flow: &Flow) -> Option<FlowTopics> {
    Some(FlowTopics {
        source: ModelVersion::new(flow.source_model.clone(), flow.source_version.as_ref()?),
        target: ModelVersion::new(flow.target_model.clone(), flow.target_version.as_ref()?),
    })
}

/// Whether `flow` loads what its source table already holds before live records: every
/// migration flow, and a regular flow with `initial_load: true`.
pub fn needs_initial_load(flow: &Flow) -> bool {
    flow.initial_load || flow.kind == FlowKind::Migration as i32
}

/// Checks `manifest` against every rule above. With `transforms`, each flow's transform
/// must be registered in it; without (the `weir` command line, which does not hold the
/// program's functions), that rule is left to the program that runs the flows.
pub fn validate(
    manifest: FlowsManifest,
    transforms: Option<&TransformRegistry>,
) -> Result<ValidManifest, InvalidManifest> {
    let mut problems = Vec::new();
    let models = check_models(&manifest, &mut problems);
    check_flows(&manifest, &models, transforms, &mut problems);
    if problems.is_empty() {
        Ok(ValidManifest { manifest, models })
    } else {
        Err(InvalidManifest { problems })
    }
}

fn model_subject(model: &DataModel) -> Subject {
    Subject::Model {
        name: model.name.clone(),
        version: model
            .version
            .as_ref()
            .map(|v| format!("{}.{}", v.major, v.minor))
            .unwrap_or_default(),
    }
}

fn check_models(
    manifest: &FlowsManifest,
    problems: &mut Vec<Problem>,
) -> BTreeMap<ModelVersion, usize> {
    let mut models = BTreeMap::new();
    for (index, model) in manifest.data_models.iter().enumerate() {
        let mut problem = |message: String| {
            problems.push(Problem {
                subject: model_subject(model),
                message,
            })
        };
        if !naming::is_valid_model_name(&model.name) {
            problem(
                "the name must be non-empty ASCII letters, digits, '_' or '-', without an \
                 all-digit '_'-separated part"
                    .to_owned(),
            );
        }
        match &model.version {
            None => problem("no version".to_owned()),
            Some(version) => {
                let id = ModelVersion::new(model.name.clone(), version);
                if id.ingestion_topic().len() > MAX_TOPIC_NAME_LEN {
                    problem(format!(
                        "topic name {} is longer than {MAX_TOPIC_NAME_LEN} characters",
                        id.ingestion_topic()
                    ));
                }
                if models.insert(id, index).is_some() {
                    problem("declared more than once".to_owned());
                }
            }
        }
        let mut seen = BTreeSet::new();
        for field in &model.fields {
            if field.name.is_empty() {
                problem("a field has an empty name".to_owned());
            } else if !seen.insert(field.name.as_str()) {
                problem(format!("field {:?} is declared more than once", field.name));
            }
            if FieldType::try_from(field.field_type).is_err() {
                problem(format!(
                    "field {:?} has unknown type {}",
                    field.name, field.field_type
                ));
            }
        }
        if model.key_field.is_empty() {
            problem("no key field".to_owned());
        } else {
            match model.fields.iter().find(|f| f.name == model.key_field) {
                None => problem(format!(
                    "key field {:?} is not a declared field",
                    model.key_field
                )),
                Some(key) => {
                    if !key.required {
                        problem(format!("key field {:?} must be required: true", key.name));
                    }
                    if !matches!(
                        FieldType::try_from(key.field_type),
                        Ok(FieldType::String | FieldType::Int)
                    ) {
                        problem(format!(
                            "key field {:?} must be of type STRING or INT",
                            key.name
                        ));
                    }
                }
            }
        }
    }
    models
}

fn check_flows(
    manifest: &FlowsManifest,
    models: &BTreeMap<ModelVersion, usize>,
    transforms: Option<&TransformRegistry>,
    problems: &mut Vec<Problem>,
) {
    let mut names = BTreeSet::new();
    let mut by_topics: BTreeMap<FlowTopics, &str> = BTreeMap::new();
    let mut regular_edges: BTreeMap<ModelVersion, BTreeSet<ModelVersion>> = BTreeMap::new();
    for flow in &manifest.flows {
        let mut problem = |message: String| {
            problems.push(Problem {
                subject: Subject::Flow(flow.name.clone()),
                message,
            })
        };
        if !is_valid_name(&flow.name) {
            problem("the name must be non-empty ASCII letters, digits, '.', '_' or '-'".to_owned());
        } else if !names.insert(flow.name.as_str()) {
            problem("declared more than once".to_owned());
        }
        if flow.transform.is_empty() {
            problem("no transform".to_owned());
        } else if let Some(registry) = transforms
            && !registry.contains(&flow.transform)
        {
            problem(format!(
                "transform {:?} is not registered in this program",
                flow.transform
            ));
        }
        if flow.source_version.is_none() {
            problem("no source_version".to_owned());
        }
        if flow.target_version.is_none() {
            problem("no target_version".to_owned());
        }
        let Some(topics) = flow_topics(flow) else {
            continue;
        };
        for (role, id) in [("source", &topics.source), ("target", &topics.target)] {
            if !models.contains_key(id) {
                problem(format!("{role} {id} is not a declared model version"));
            }
        }
        if topics.output().len() > MAX_TOPIC_NAME_LEN {
            problem(format!(
                "topic name {} is longer than {MAX_TOPIC_NAME_LEN} characters",
                topics.output()
            ));
        }
        match FlowKind::try_from(flow.kind) {
            Err(_) => problem(format!("unknown kind {}", flow.kind)),
            Ok(FlowKind::Regular) => {
                if topics.source.name == topics.target.name {
                    problem(format!(
                        "a regular flow goes between two models, but both are {:?}; \
                         use kind MIGRATION to move records between versions",
                        topics.source.name
                    ));
                } else {
                    regular_edges
                        .entry(topics.source.clone())
                        .or_default()
                        .insert(topics.target.clone());
                }
            }
            Ok(FlowKind::Migration) => {
                if topics.source.name != topics.target.name {
                    problem(format!(
                        "a migration flow stays within one model, but goes from {:?} to {:?}",
                        topics.source.name, topics.target.name
                    ));
                } else if topics.target.version() <= topics.source.version() {
                    problem(format!(
                        "a migration flow goes to a greater version, but goes from {} to {}",
                        topics.source, topics.target
                    ));
                } else if let Some(between) = models.keys().find(|m| {
                    m.name == topics.source.name
                        && m.version() > topics.source.version()
                        && m.version() < topics.target.version()
                }) {
                    problem(format!(
                        "a migration flow goes to the next declared version, but {} lies \
                         between {} and {}",
                        between, topics.source, topics.target
                    ));
                }
            }
        }
        if let Some(other) = by_topics.get(&topics) {
            problem(format!(
                "flow {other:?} also goes from {} to {}: they would share the topics {} and {}",
                topics.source,
                topics.target,
                topics.input(),
                topics.output()
            ));
        } else {
            by_topics.insert(topics, flow.name.as_str());
        }
    }
    if let Some(cycle) = find_cycle(&regular_edges) {
        let flows: Vec<String> = cycle
            .windows(2)
            .filter_map(|pair| {
                manifest
                    .flows
                    .iter()
                    .find(|f| {
                        f.kind == FlowKind::Regular as i32
                            && flow_topics(f)
                                .is_some_and(|t| t.source == pair[0] && t.target == pair[1])
                    })
                    .map(|f| f.name.clone())
            })
            .collect();
        let path: Vec<String> = cycle.iter().map(ToString::to_string).collect();
        problems.push(Problem {
            subject: Subject::Flow(flows.first().cloned().unwrap_or_default()),
            message: format!(
                "regular flows {flows:?} form a cycle ({}): records would be copied forever",
                path.join(" -> ")
            ),
        });
    }
}

/// A cycle in `edges` as its nodes, first repeated last; the first cycle found in node
/// order, so the report is deterministic.
fn find_cycle(edges: &BTreeMap<ModelVersion, BTreeSet<ModelVersion>>) -> Option<Vec<ModelVersion>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        OnPath,
        Done,
    }
    fn visit<'a>(
        node: &'a ModelVersion,
        edges: &'a BTreeMap<ModelVersion, BTreeSet<ModelVersion>>,
        marks: &mut BTreeMap<&'a ModelVersion, Mark>,
        path: &mut Vec<&'a ModelVersion>,
    ) -> Option<Vec<ModelVersion>> {
        match marks.get(node) {
            Some(Mark::Done) => return None,
            Some(Mark::OnPath) => {
                let start = path.iter().position(|n| *n == node).unwrap_or(0);
                let mut cycle: Vec<ModelVersion> =
                    path[start..].iter().map(|n| (*n).clone()).collect();
                cycle.push(node.clone());
                return Some(cycle);
            }
            None => {}
        }
        marks.insert(node, Mark::OnPath);
        path.push(node);
        for next in edges.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, edges, marks, path) {
                return Some(cycle);
            }
        }
        path.pop();
        marks.insert(node, Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for node in edges.keys() {
        if let Some(cycle) = visit(node, edges, &mut marks, &mut Vec::new()) {
            return Some(cycle);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_proto::{DataModelField, DataModelVersion};

    const YAML: &str = r#"
data_models:
  - name: UserActivity
    version: {major: 0, minor: 0}
    key_field: user_id
    fields:
      - {name: user_id, field_type: STRING, required: true}
      - {name: event, field_type: STRING}
  - name: UserActivity
    version: {major: 0, minor: 1}
    key_field: user_id
    fields:
      - {name: user_id, field_type: STRING, required: true}
      - {name: event, field_type: STRING, required: true}
      - {name: at, field_type: TIMESTAMP}
  - name: ParsedActivity
    version: {major: 0, minor: 1}
    key_field: id
    fields:
      - {name: id, field_type: INT, required: true}
flows:
  - name: migrate-user-activity
    source_model: UserActivity
    source_version: {major: 0, minor: 0}
    target_model: UserActivity
    target_version: {major: 0, minor: 1}
    kind: MIGRATION
    transform: ua_0_0_to_0_1
  - name: parse-activity
    source_model: UserActivity
    source_version: {major: 0, minor: 1}
    target_model: ParsedActivity
    target_version: {major: 0, minor: 1}
    transform: parse
    initial_load: true
"#;

    fn example() -> FlowsManifest {
        parse(YAML, SpecFormat::Yaml, "flows.yaml").expect("example parses")
    }

    fn registry(names: &[&str]) -> TransformRegistry {
        let mut registry = TransformRegistry::new();
        for name in names {
            registry
                .register(*name, |v: &serde_json::Value| Ok(vec![v.clone()]))
                .expect("distinct names");
        }
        registry
    }

    fn problems(manifest: FlowsManifest, transforms: Option<&TransformRegistry>) -> Vec<String> {
        match validate(manifest, transforms) {
            Ok(_) => Vec::new(),
            Err(invalid) => invalid.problems.iter().map(ToString::to_string).collect(),
        }
    }

    fn version(major: u32, minor: u32) -> Option<DataModelVersion> {
        Some(DataModelVersion { major, minor })
    }

    fn model(name: &str, major: u32, minor: u32) -> DataModel {
        DataModel {
            name: name.into(),
            version: version(major, minor),
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
            source_version: version(from.1, from.2),
            target_model: to.0.into(),
            target_version: version(to.1, to.2),
            kind: kind as i32,
            transform: "t".into(),
            initial_load: false,
        }
    }

    #[test]
    fn yaml_and_json_read_the_same_manifest() {
        let yaml = example();
        assert_eq!(yaml.data_models.len(), 3);
        assert_eq!(yaml.flows[0].kind, FlowKind::Migration as i32);
        assert_eq!(yaml.flows[1].kind, FlowKind::Regular as i32);
        assert_eq!(
            yaml.data_models[1].fields[2].field_type,
            FieldType::Timestamp as i32
        );
        let json = serde_json::json!({
            "dataModels": [
                {"name": "UserActivity", "version": {"major": 0, "minor": 0}, "keyField": "user_id",
                 "fields": [{"name": "user_id", "fieldType": "STRING", "required": true},
                            {"name": "event", "fieldType": "STRING"}]},
                {"name": "UserActivity", "version": {"major": 0, "minor": 1}, "keyField": "user_id",
                 "fields": [{"name": "user_id", "fieldType": "STRING", "required": true},
                            {"name": "event", "fieldType": "STRING", "required": true},
                            {"name": "at", "fieldType": "TIMESTAMP"}]},
                {"name": "ParsedActivity", "version": {"major": 0, "minor": 1}, "keyField": "id",
                 "fields": [{"name": "id", "fieldType": "INT", "required": true}]}
            ],
            "flows": [
                {"name": "migrate-user-activity", "sourceModel": "UserActivity",
                 "sourceVersion": {"major": 0, "minor": 0}, "targetModel": "UserActivity",
                 "targetVersion": {"major": 0, "minor": 1}, "kind": "MIGRATION",
                 "transform": "ua_0_0_to_0_1"},
                {"name": "parse-activity", "sourceModel": "UserActivity",
                 "sourceVersion": {"major": 0, "minor": 1}, "targetModel": "ParsedActivity",
                 "targetVersion": {"major": 0, "minor": 1}, "transform": "parse",
                 "initialLoad": true}
            ]
        });
        let parsed = parse(&json.to_string(), SpecFormat::Json, "flows.json").expect("JSON");
        assert_eq!(parsed, yaml);
    }

    #[test]
    fn parse_errors_name_the_file_on_one_line() {
        let err = parse(
            "data_models:\n  - name: A\n    colour: red\n",
            SpecFormat::Yaml,
            "f.yaml",
        )
        .expect_err("unknown field");
        let text = err.to_string();
        assert!(
            text.starts_with("f.yaml: not a valid flows manifest (YAML): "),
            "{text}"
        );
        assert!(text.contains("colour") && !text.contains('\n'), "{text}");
        let err = parse(
            r#"{"flows": [{"kind": "SIDEWAYS"}]}"#,
            SpecFormat::Json,
            "f.json",
        )
        .expect_err("bad enum");
        assert!(err.to_string().contains("SIDEWAYS"), "{err}");
        let err = read(Path::new("/nonexistent/flows.yaml")).expect_err("missing");
        assert!(
            err.to_string()
                .starts_with("cannot read /nonexistent/flows.yaml")
        );
    }

    #[test]
    fn the_example_is_valid_and_its_transforms_must_be_registered() {
        let valid = validate(
            example(),
            Some(&registry(&["ua_0_0_to_0_1", "parse", "unused"])),
        )
        .expect("valid");
        assert_eq!(valid.models().count(), 3);
        let ua01 = ModelVersion::new("UserActivity", &DataModelVersion { major: 0, minor: 1 });
        assert_eq!(valid.model(&ua01).map(|m| m.fields.len()), Some(3));
        assert!(needs_initial_load(&valid.flows()[0]));
        assert!(needs_initial_load(&valid.flows()[1]));
        assert_eq!(problems(example(), None), Vec::<String>::new());
        assert_eq!(
            problems(example(), Some(&registry(&["parse"]))),
            [
                r#"flow "migrate-user-activity": transform "ua_0_0_to_0_1" is not registered in this program"#
            ]
        );
    }

    #[test]
    fn model_problems_are_all_reported() {
        let mut bad_name = model("Order_2", 1, 0);
        bad_name.key_field = String::new();
        let mut dup_fields = model("Order", 1, 0);
        dup_fields.fields.push(dup_fields.fields[0].clone());
        dup_fields.fields.push(DataModelField {
            name: String::new(),
            field_type: 42,
            required: false,
        });
        let mut optional_key = model("Order", 1, 1);
        optional_key.fields[0].required = false;
        optional_key.fields[0].field_type = FieldType::Float as i32;
        let mut undeclared_key = model("Order", 1, 2);
        undeclared_key.key_field = "order_id".into();
        let mut no_version = model("Order", 0, 0);
        no_version.version = None;
        let long = model(&"L".repeat(250), 0, 0);
        let manifest = FlowsManifest {
            data_models: vec![
                bad_name,
                dup_fields,
                optional_key,
                undeclared_key,
                model("Order", 1, 2),
                no_version,
                long,
            ],
            flows: vec![],
        };
        let long_topic = format!("{}_0_0", "L".repeat(250));
        assert_eq!(
            problems(manifest, None),
            [
                r#"model "Order_2" 1.0: the name must be non-empty ASCII letters, digits, '_' or '-', without an all-digit '_'-separated part"#.to_owned(),
                r#"model "Order_2" 1.0: no key field"#.to_owned(),
                r#"model "Order" 1.0: field "id" is declared more than once"#.to_owned(),
                r#"model "Order" 1.0: a field has an empty name"#.to_owned(),
                r#"model "Order" 1.0: field "" has unknown type 42"#.to_owned(),
                r#"model "Order" 1.1: key field "id" must be required: true"#.to_owned(),
                r#"model "Order" 1.1: key field "id" must be of type STRING or INT"#.to_owned(),
                r#"model "Order" 1.2: key field "order_id" is not a declared field"#.to_owned(),
                r#"model "Order" 1.2: declared more than once"#.to_owned(),
                r#"model "Order": no version"#.to_owned(),
                format!(
                    r#"model "{}" 0.0: topic name {long_topic} is longer than 249 characters"#,
                    "L".repeat(250)
                ),
            ]
        );
    }

    #[test]
    fn flow_problems_are_all_reported() {
        use FlowKind::{Migration, Regular};
        let mut no_transform = flow("no-transform", Regular, ("A", 0, 0), ("B", 0, 0));
        no_transform.transform = String::new();
        let mut no_versions = flow("no-versions", Regular, ("A", 0, 0), ("B", 0, 0));
        no_versions.source_version = None;
        no_versions.target_version = None;
        let mut bad_kind = flow("bad-kind", Regular, ("A", 0, 1), ("B", 0, 0));
        bad_kind.kind = 7;
        let manifest = FlowsManifest {
            data_models: vec![
                model("A", 0, 0),
                model("A", 0, 1),
                model("A", 1, 0),
                model("B", 0, 0),
                model("B", 0, 1),
            ],
            flows: vec![
                flow("a-to-b", Regular, ("A", 0, 0), ("B", 0, 0)),
                flow("a-to-b", Regular, ("A", 0, 1), ("B", 0, 1)),
                flow("same model", Regular, ("A", 0, 0), ("A", 0, 1)),
                flow("across-models", Migration, ("A", 0, 0), ("B", 0, 1)),
                flow("backwards", Migration, ("A", 0, 1), ("A", 0, 0)),
                flow("skips", Migration, ("A", 0, 0), ("A", 1, 0)),
                flow("to-nowhere", Regular, ("A", 0, 0), ("C", 0, 0)),
                flow("again", Regular, ("A", 0, 0), ("B", 0, 0)),
                no_transform,
                no_versions,
                bad_kind,
                flow("ok-migration", Migration, ("A", 0, 1), ("A", 1, 0)),
            ],
        };
        assert_eq!(
            problems(manifest, None),
            [
                r#"flow "a-to-b": declared more than once"#,
                r#"flow "same model": the name must be non-empty ASCII letters, digits, '.', '_' or '-'"#,
                r#"flow "same model": a regular flow goes between two models, but both are "A"; use kind MIGRATION to move records between versions"#,
                r#"flow "across-models": a migration flow stays within one model, but goes from "A" to "B""#,
                r#"flow "backwards": a migration flow goes to a greater version, but goes from A 0.1 to A 0.0"#,
                r#"flow "skips": a migration flow goes to the next declared version, but A 0.1 lies between A 0.0 and A 1.0"#,
                r#"flow "to-nowhere": target C 0.0 is not a declared model version"#,
                r#"flow "again": flow "a-to-b" also goes from A 0.0 to B 0.0: they would share the topics A_0_0_B_0_0_input and A_0_0_B_0_0_output"#,
                r#"flow "no-transform": no transform"#,
                r#"flow "no-transform": flow "a-to-b" also goes from A 0.0 to B 0.0: they would share the topics A_0_0_B_0_0_input and A_0_0_B_0_0_output"#,
                r#"flow "no-versions": no source_version"#,
                r#"flow "no-versions": no target_version"#,
                r#"flow "bad-kind": unknown kind 7"#,
            ]
        );
    }

    #[test]
    fn regular_flows_may_not_form_a_cycle() {
        use FlowKind::Regular;
        let manifest = FlowsManifest {
            data_models: vec![model("A", 0, 0), model("B", 0, 0), model("C", 0, 0)],
            flows: vec![
                flow("a-b", Regular, ("A", 0, 0), ("B", 0, 0)),
                flow("b-c", Regular, ("B", 0, 0), ("C", 0, 0)),
                flow("c-a", Regular, ("C", 0, 0), ("A", 0, 0)),
            ],
        };
        let mut chain = manifest.clone();
        chain.flows.pop();
        assert_eq!(problems(chain, None), Vec::<String>::new());
        assert_eq!(
            problems(manifest, None),
            [
                r#"flow "a-b": regular flows ["a-b", "b-c", "c-a"] form a cycle (A 0.0 -> B 0.0 -> C 0.0 -> A 0.0): records would be copied forever"#
            ]
        );
        let err = validate(
            FlowsManifest {
                data_models: vec![model("A", 0, 0), model("A", 0, 0)],
                flows: vec![],
            },
            None,
        )
        .expect_err("duplicate");
        assert_eq!(
            err.to_string(),
            "invalid flows manifest (1 problem):\n  model \"A\" 0.0: declared more than once"
        );
    }
}
