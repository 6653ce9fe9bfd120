//! What the output topic sends: the tenant's default recording level, overridden by the
//! `enable_entity_events` of the metadata object that governs each execution object
//! (`WfSpec` → `WfRun`, `TaskDef` → `TaskRun`, `ExternalEventDef` → `ExternalEvent`,
//! `WorkflowEventDef` → `WorkflowEvent`, `UserTaskDef` → `UserTaskRun`, `ThreadVarDef`
//! → `Variable`). Variables are private by default: under `ALL_ENTITY_EVENTS` only
//! `PUBLIC_VAR` ones are sent unless their `ThreadVarDef` says otherwise.

use weir_proto::output_topic_config::OutputTopicRecordingLevel;
use weir_proto::{OutputTopicConfig, WfRunVariableAccessLevel};

/// Whether an execution object is sent, given the tenant's output config (`None`: the
/// tenant has no output topic) and the governing object's override.
pub fn sends(config: Option<&OutputTopicConfig>, enable_entity_events: Option<bool>) -> bool {
    let Some(config) = config else {
        return false;
    };
    match enable_entity_events {
        Some(explicit) => explicit,
        None => config.default_recording_level() == OutputTopicRecordingLevel::AllEntityEvents,
    }
}

/// Whether a variable's changes are sent: like [`sends`], except that without an
/// override only public variables follow the tenant default; private and inherited
/// ones are never sent by default.
pub fn sends_variable(
    config: Option<&OutputTopicConfig>,
    access_level: WfRunVariableAccessLevel,
    enable_entity_events: Option<bool>,
) -> bool {
    match enable_entity_events {
        Some(_) => sends(config, enable_entity_events),
        None => access_level == WfRunVariableAccessLevel::PublicVar && sends(config, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(level: OutputTopicRecordingLevel) -> OutputTopicConfig {
        OutputTopicConfig {
            default_recording_level: level as i32,
        }
    }

    const ALL: OutputTopicRecordingLevel = OutputTopicRecordingLevel::AllEntityEvents;
    const NONE: OutputTopicRecordingLevel = OutputTopicRecordingLevel::NoEntityEvents;

    /// Every combination of tenant setting and override, for the five kinds governed by
    /// a definition (the rule is the same for each; the table says so once).
    #[test]
    fn the_override_wins_and_the_default_decides_otherwise() {
        let table = [
            (None, None, false),
            (None, Some(true), false),
            (None, Some(false), false),
            (Some(ALL), None, true),
            (Some(ALL), Some(true), true),
            (Some(ALL), Some(false), false),
            (Some(NONE), None, false),
            (Some(NONE), Some(true), true),
            (Some(NONE), Some(false), false),
        ];
        for kind in [
            "WfRun",
            "TaskRun",
            "ExternalEvent",
            "WorkflowEvent",
            "UserTaskRun",
        ] {
            for (level, override_, expected) in table {
                let tenant = level.map(config);
                assert_eq!(
                    sends(tenant.as_ref(), override_),
                    expected,
                    "{kind}: tenant {level:?}, override {override_:?}"
                );
            }
        }
    }

    #[test]
    fn variables_are_sent_by_default_only_when_public() {
        use WfRunVariableAccessLevel::{InheritedVar, PrivateVar, PublicVar};
        let table = [
            // (tenant, access, override, sent)
            (None, PublicVar, None, false),
            (None, PublicVar, Some(true), false),
            (Some(ALL), PublicVar, None, true),
            (Some(ALL), PrivateVar, None, false),
            (Some(ALL), InheritedVar, None, false),
            (Some(ALL), PublicVar, Some(false), false),
            (Some(ALL), PrivateVar, Some(true), true),
            (Some(ALL), PrivateVar, Some(false), false),
            (Some(NONE), PublicVar, None, false),
            (Some(NONE), PrivateVar, None, false),
            (Some(NONE), PublicVar, Some(true), true),
            (Some(NONE), PrivateVar, Some(true), true),
            (Some(NONE), PublicVar, Some(false), false),
            (Some(NONE), InheritedVar, Some(true), true),
        ];
        for (level, access, override_, expected) in table {
            let tenant = level.map(config);
            assert_eq!(
                sends_variable(tenant.as_ref(), access, override_),
                expected,
                "tenant {level:?}, {access:?}, override {override_:?}"
            );
        }
    }
}
