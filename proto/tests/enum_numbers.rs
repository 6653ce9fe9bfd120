//! Pins the numbers of the enums whose values must match the Output Topic
//! proposal and LittleHorse.

use weir_proto::output_topic_config::OutputTopicRecordingLevel;
use weir_proto::{LhStatus, TaskStatus, WfRunVariableAccessLevel};

#[test]
fn output_topic_recording_level() {
    assert_eq!(OutputTopicRecordingLevel::AllEntityEvents as i32, 0);
    assert_eq!(OutputTopicRecordingLevel::NoEntityEvents as i32, 1);
    assert_eq!(
        OutputTopicRecordingLevel::default(),
        OutputTopicRecordingLevel::AllEntityEvents
    );
}

#[test]
fn lh_status() {
    let expected = [
        (LhStatus::Starting, 0, "STARTING"),
        (LhStatus::Running, 1, "RUNNING"),
        (LhStatus::Completed, 2, "COMPLETED"),
        (LhStatus::Halting, 3, "HALTING"),
        (LhStatus::Halted, 4, "HALTED"),
        (LhStatus::Error, 5, "ERROR"),
        (LhStatus::Exception, 6, "EXCEPTION"),
    ];
    for (status, number, name) in expected {
        assert_eq!(status as i32, number, "{name}");
        assert_eq!(status.as_str_name(), name);
    }
}

#[test]
fn task_status() {
    let expected = [
        (TaskStatus::TaskScheduled, 0, "TASK_SCHEDULED"),
        (TaskStatus::TaskRunning, 1, "TASK_RUNNING"),
        (TaskStatus::TaskSuccess, 2, "TASK_SUCCESS"),
        (TaskStatus::TaskFailed, 3, "TASK_FAILED"),
        (TaskStatus::TaskTimeout, 4, "TASK_TIMEOUT"),
        (
            TaskStatus::TaskOutputSerdeError,
            5,
            "TASK_OUTPUT_SERDE_ERROR",
        ),
        (
            TaskStatus::TaskInputVarSubError,
            6,
            "TASK_INPUT_VAR_SUB_ERROR",
        ),
        (TaskStatus::TaskException, 8, "TASK_EXCEPTION"),
        (TaskStatus::TaskPending, 9, "TASK_PENDING"),
    ];
    for (status, number, name) in expected {
        assert_eq!(status as i32, number, "{name}");
        assert_eq!(status.as_str_name(), name);
    }
    assert!(TaskStatus::try_from(7).is_err(), "7 is not a TaskStatus");
}

#[test]
fn variable_access_level() {
    assert_eq!(WfRunVariableAccessLevel::PublicVar as i32, 0);
    assert_eq!(WfRunVariableAccessLevel::PrivateVar as i32, 1);
    assert_eq!(WfRunVariableAccessLevel::InheritedVar as i32, 2);
}
