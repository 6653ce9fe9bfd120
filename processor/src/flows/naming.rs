//! The names flows give to Kafka topics and stores, and reading them back.
//!
//! | what                       | name                                              |
//! |----------------------------|---------------------------------------------------|
//! | ingestion topic of a model | `{Model}_{major}_{minor}`                         |
//! | table (store) of a model   | `{Model}_{major}_{minor}`                         |
//! | flow input topic           | `{Src}_{major}_{minor}_{Dst}_{major}_{minor}_input`  |
//! | flow output topic          | `{Src}_{major}_{minor}_{Dst}_{major}_{minor}_output` |
//!
//! A table shares its model version's name, as in Moose; its changelog is the runtime's
//! `{cluster}_{store}-changelog`. For the names to read back without ambiguity, a
//! model name ([`is_valid_model_name`]) may not hold an all-digit `_`-separated part
//! (`Order_2` is refused, `Order2` and `Order_v2` are fine): the only all-digit parts of
//! a flows name are then its versions. A model name may not hold '.' either: Kafka
//! refuses a topic whose name differs from an existing one only by '.' versus '_'.

use std::fmt;

use weir_proto::DataModelVersion;

use crate::topics::is_valid_name;

/// The longest topic name Kafka accepts.
pub const MAX_TOPIC_NAME_LEN: usize = 249;

/// A model name and version: one data model version, the unit that has an ingestion
/// topic and a table.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ModelVersion {
    /// Model name.
    pub name: String,
    /// Major version.
    pub major: u32,
    /// Minor version.
    pub minor: u32,
}

impl ModelVersion {
    /// The model `name` at `version`.
    pub fn new(name: impl Into<String>, version: &DataModelVersion) -> Self {
        Self {
            name: name.into(),
            major: version.major,
            minor: version.minor,
        }
    }

    /// The version as `(major, minor)`, ordered as versions are compared.
    pub fn version(&self) -> (u32, u32) {
        (self.major, self.minor)
    }

    /// `{Model}_{major}_{minor}`: the ingestion topic of this model version.
    pub fn ingestion_topic(&self) -> String {
        format!("{}_{}_{}", self.name, self.major, self.minor)
    }

    /// `{Model}_{major}_{minor}`: the table (store) of this model version, keyed by the
    /// record key.
    pub fn table(&self) -> String {
        self.ingestion_topic()
    }
}

impl fmt::Display for ModelVersion {
    /// `UserActivity 0.1`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}.{}", self.name, self.major, self.minor)
    }
}

/// Which of a flow's two topics a name is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FlowTopicRole {
    /// `…_input`: records of the source waiting for the transform.
    Input,
    /// `…_output`: what the transform produced.
    Output,
}

impl FlowTopicRole {
    fn suffix(self) -> &'static str {
        match self {
            Self::Input => "input",
            Self::Output => "output",
        }
    }
}

/// The topics of the flow from `source` to `target`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FlowTopics {
    /// The model version the flow reads.
    pub source: ModelVersion,
    /// The model version the flow writes.
    pub target: ModelVersion,
}

impl FlowTopics {
    /// `{Src}_{major}_{minor}_{Dst}_{major}_{minor}_{input|output}`.
    pub fn topic(&self, role: FlowTopicRole) -> String {
        format!(
            "{}_{}_{}",
            self.source.ingestion_topic(),
            self.target.ingestion_topic(),
            role.suffix()
        )
    }

    /// The input topic: the ingestion topic's records (and an initial load) go here.
    pub fn input(&self) -> String {
        self.topic(FlowTopicRole::Input)
    }

    /// The output topic: the transform's results.
    pub fn output(&self) -> String {
        self.topic(FlowTopicRole::Output)
    }
}

/// Whether `name` may name a data model: a valid topic-name part
/// ([`is_valid_name`]) without '.' and without an all-digit `_`-separated part.
pub fn is_valid_model_name(name: &str) -> bool {
    is_valid_name(name) && !name.contains('.') && !name.split('_').any(is_version_part)
}

fn is_version_part(part: &str) -> bool {
    !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit())
}

/// Whether `name` may name a store in the runtime: letters, digits, '.', '_' and '-'.
pub fn is_valid_store_name(name: &str) -> bool {
    is_valid_name(name)
}

/// Reads `{Model}_{major}_{minor}` back into its model version; `None` if it is not
/// such a name.
pub fn parse_ingestion_topic(topic: &str) -> Option<ModelVersion> {
    let parts: Vec<&str> = topic.split('_').collect();
    let version_at = version_positions(&parts);
    match version_at.as_slice() {
        [at] if *at + 2 == parts.len() => model_version(&parts[..*at], parts[*at], parts[at + 1]),
        _ => None,
    }
}

/// Reads a flow topic back into its models and role; `None` if it is not one.
pub fn parse_flow_topic(topic: &str) -> Option<(FlowTopics, FlowTopicRole)> {
    let (rest, role) = if let Some(rest) = topic.strip_suffix("_input") {
        (rest, FlowTopicRole::Input)
    } else {
        (topic.strip_suffix("_output")?, FlowTopicRole::Output)
    };
    let parts: Vec<&str> = rest.split('_').collect();
    let version_at = version_positions(&parts);
    match version_at.as_slice() {
        [first, second] if *second + 2 == parts.len() => {
            let source = model_version(&parts[..*first], parts[*first], parts[first + 1])?;
            let target = model_version(
                &parts[first + 2..*second],
                parts[*second],
                parts[second + 1],
            )?;
            Some((FlowTopics { source, target }, role))
        }
        _ => None,
    }
}

/// Where each `{major}_{minor}` pair starts among `parts`, or an empty list if the
/// all-digit parts do not come in such pairs.
fn version_positions(parts: &[&str]) -> Vec<usize> {
    let mut positions = Vec::new();
    let mut i = 0;
    while i < parts.len() {
        if is_version_part(parts[i]) {
            if i + 1 >= parts.len() || !is_version_part(parts[i + 1]) {
                return Vec::new();
            }
            positions.push(i);
            i += 2;
        } else {
            i += 1;
        }
    }
    positions
}

fn model_version(name_parts: &[&str], major: &str, minor: &str) -> Option<ModelVersion> {
    let name = name_parts.join("_");
    if !is_valid_model_name(&name) {
        return None;
    }
    Some(ModelVersion {
        name,
        major: major.parse().ok()?,
        minor: minor.parse().ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mv(name: &str, major: u32, minor: u32) -> ModelVersion {
        ModelVersion::new(name, &DataModelVersion { major, minor })
    }

    #[test]
    fn names_follow_the_rfd() {
        let ua00 = mv("UserActivity", 0, 0);
        let ua01 = mv("UserActivity", 0, 1);
        let pa01 = mv("ParsedActivity", 0, 1);
        assert_eq!(ua01.ingestion_topic(), "UserActivity_0_1");
        assert_eq!(ua01.table(), "UserActivity_0_1");
        assert!(is_valid_store_name(&ua01.table()));
        assert_eq!(ua01.to_string(), "UserActivity 0.1");
        let migration = FlowTopics {
            source: ua00,
            target: ua01.clone(),
        };
        assert_eq!(migration.input(), "UserActivity_0_0_UserActivity_0_1_input");
        assert_eq!(
            migration.output(),
            "UserActivity_0_0_UserActivity_0_1_output"
        );
        let regular = FlowTopics {
            source: ua01,
            target: pa01,
        };
        assert_eq!(
            regular.output(),
            "UserActivity_0_1_ParsedActivity_0_1_output"
        );
        assert!(is_valid_name(&regular.output()));
    }

    #[test]
    fn model_names_exclude_version_like_parts_and_dots() {
        for good in [
            "UserActivity",
            "user_activity",
            "Order2",
            "Order_v2",
            "a-b",
            "_x",
        ] {
            assert!(is_valid_model_name(good), "{good:?}");
        }
        for bad in ["", "Order_2", "2", "a_10_b", "a.b", "a b", "ü"] {
            assert!(!is_valid_model_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn names_read_back() {
        let ua = mv("user_activity", 12, 3);
        assert_eq!(
            parse_ingestion_topic(&ua.ingestion_topic()),
            Some(ua.clone())
        );
        let flow = FlowTopics {
            source: ua.clone(),
            target: mv("parsed_activity-v", 0, 10),
        };
        assert_eq!(
            parse_flow_topic(&flow.input()),
            Some((flow.clone(), FlowTopicRole::Input))
        );
        assert_eq!(
            parse_flow_topic(&flow.output()),
            Some((flow.clone(), FlowTopicRole::Output))
        );
        // A flow topic is not an ingestion topic and the other way round.
        assert_eq!(parse_ingestion_topic(&flow.input()), None);
        assert_eq!(parse_flow_topic(&ua.ingestion_topic()), None);
        for bad in [
            "UserActivity",
            "UserActivity_1",
            "UserActivity_1_2_3",
            "_1_2",
            "A_1_2_input",
            "A_1_2_B_3_4",
            "A_1_2_B_3_4_C_5_6_input",
            "A_1_2__3_4_output",
            "A_1_99999999999",
        ] {
            assert_eq!(parse_ingestion_topic(bad), None, "{bad:?}");
            assert_eq!(parse_flow_topic(bad), None, "{bad:?}");
        }
    }
}
