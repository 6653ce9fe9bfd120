//! Checking a `WfSpec` before it is stored: every reference resolves (threads, nodes,
//! TaskDefs, event and user task definitions, variables, node outputs), every value has
//! the type its destination declares, and every node can still reach an exit, so no
//! cycle or dead end can trap a run. Errors name the thread and node involved.

use std::collections::{BTreeMap, BTreeSet};

use weir_proto::node::Node as NodeKind;
use weir_proto::variable_assignment::Source;
use weir_proto::variable_mutation::RhsValue;
use weir_proto::{
    Node, TaskDef, ThreadSpec, VariableAssignment, VariableMutationType, VariableType, WfSpec,
};

use super::typing::value_type;

/// The metadata a spec may refer to, as the tenant has it now.
pub trait KnownMetadata {
    fn task_def(&self, name: &str) -> Option<&TaskDef>;
    fn has_external_event_def(&self, name: &str) -> bool;
    fn has_workflow_event_def(&self, name: &str) -> bool;
    fn has_user_task_def(&self, name: &str) -> bool;
}

/// One thing wrong with a spec, worded for the person who wrote it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error("the entrypoint thread {0:?} is not among the spec's threads")]
    MissingEntrypointThread(String),
    #[error("thread {thread}: it has {count} entrypoint nodes; it needs exactly one")]
    EntrypointCount { thread: String, count: usize },
    #[error(
        "thread {thread}, node {node}: an edge leads to {target:?}, which is not a node of this thread"
    )]
    UnknownEdgeTarget {
        thread: String,
        node: String,
        target: String,
    },
    #[error("thread {thread}, node {node}: TaskDef {task_def:?} does not exist")]
    MissingTaskDef {
        thread: String,
        node: String,
        task_def: String,
    },
    #[error(
        "thread {thread}, node {node}: TaskDef {task_def} takes {expected} arguments, the node gives {given}"
    )]
    ArgumentCount {
        thread: String,
        node: String,
        task_def: String,
        expected: usize,
        given: usize,
    },
    #[error("thread {thread}, node {node}: ExternalEventDef {def:?} does not exist")]
    MissingExternalEventDef {
        thread: String,
        node: String,
        def: String,
    },
    #[error("thread {thread}, node {node}: WorkflowEventDef {def:?} does not exist")]
    MissingWorkflowEventDef {
        thread: String,
        node: String,
        def: String,
    },
    #[error("thread {thread}, node {node}: UserTaskDef {def:?} does not exist")]
    MissingUserTaskDef {
        thread: String,
        node: String,
        def: String,
    },
    #[error("thread {thread}, node {node}: variable {variable:?} is not declared in this thread")]
    UnknownVariable {
        thread: String,
        node: String,
        variable: String,
    },
    #[error(
        "thread {thread}, node {node}: output of node {target:?} is used, but there is no such node"
    )]
    UnknownNodeOutput {
        thread: String,
        node: String,
        target: String,
    },
    #[error("thread {thread}, node {node}: {place} expects {expected:?}, but is given {given:?}")]
    TypeMismatch {
        thread: String,
        node: String,
        place: String,
        expected: VariableType,
        given: VariableType,
    },
    #[error(
        "thread {thread}: variable {variable:?} has a default of type {given:?}, but is declared {expected:?}"
    )]
    DefaultTypeMismatch {
        thread: String,
        variable: String,
        expected: VariableType,
        given: VariableType,
    },
    #[error(
        "thread {thread}, node {node}: no exit node can be reached from here (a cycle without exit, or a dead end)"
    )]
    NoWayOut { thread: String, node: String },
}

/// Every problem of `spec` against `known`, in thread and node order; empty when valid.
pub fn validate_wf_spec(spec: &WfSpec, known: &impl KnownMetadata) -> Vec<SpecError> {
    let mut errors = Vec::new();
    if !spec.thread_specs.contains_key(&spec.entrypoint_thread_name) {
        errors.push(SpecError::MissingEntrypointThread(
            spec.entrypoint_thread_name.clone(),
        ));
    }
    for (name, thread) in &spec.thread_specs {
        ThreadCheck::new(name, thread, known, &mut errors).run();
    }
    errors
}

struct ThreadCheck<'a, K> {
    name: &'a str,
    thread: &'a ThreadSpec,
    known: &'a K,
    variables: BTreeMap<&'a str, VariableType>,
    errors: &'a mut Vec<SpecError>,
}

impl<'a, K: KnownMetadata> ThreadCheck<'a, K> {
    fn new(
        name: &'a str,
        thread: &'a ThreadSpec,
        known: &'a K,
        errors: &'a mut Vec<SpecError>,
    ) -> Self {
        let variables = thread
            .variable_defs
            .iter()
            .filter_map(|v| v.var_def.as_ref())
            .map(|d| (d.name.as_str(), d.var_type()))
            .collect();
        Self {
            name,
            thread,
            known,
            variables,
            errors,
        }
    }

    fn run(mut self) {
        for def in self
            .thread
            .variable_defs
            .iter()
            .filter_map(|v| v.var_def.as_ref())
        {
            if let Some(given) = def.default_value.as_ref().and_then(value_type)
                && given != def.var_type()
            {
                self.errors.push(SpecError::DefaultTypeMismatch {
                    thread: self.name.to_owned(),
                    variable: def.name.clone(),
                    expected: def.var_type(),
                    given,
                });
            }
        }
        let entrypoints = self
            .thread
            .nodes
            .values()
            .filter(|n| matches!(n.node, Some(NodeKind::Entrypoint(_))))
            .count();
        if entrypoints != 1 {
            self.errors.push(SpecError::EntrypointCount {
                thread: self.name.to_owned(),
                count: entrypoints,
            });
        }
        for (node_name, node) in &self.thread.nodes {
            self.check_node(node_name, node);
        }
        self.check_reachable_exit();
    }

    fn check_node(&mut self, node_name: &str, node: &Node) {
        let (thread, node_owned) = (self.name.to_owned(), node_name.to_owned());
        match &node.node {
            Some(NodeKind::Task(task)) => match self.known.task_def(&task.task_def_name) {
                None => self.errors.push(SpecError::MissingTaskDef {
                    thread,
                    node: node_owned,
                    task_def: task.task_def_name.clone(),
                }),
                Some(def) if def.input_vars.len() != task.args.len() => {
                    self.errors.push(SpecError::ArgumentCount {
                        thread,
                        node: node_owned,
                        task_def: def.name.clone(),
                        expected: def.input_vars.len(),
                        given: task.args.len(),
                    })
                }
                Some(def) => {
                    for (input, arg) in def.input_vars.iter().zip(&task.args) {
                        let place = format!("argument {:?} of {}", input.name, def.name);
                        self.check_assignment(node_name, arg, Some((place, input.var_type())));
                    }
                }
            },
            Some(NodeKind::ExternalEvent(event))
                if !self
                    .known
                    .has_external_event_def(&event.external_event_def_name) =>
            {
                self.errors.push(SpecError::MissingExternalEventDef {
                    thread,
                    node: node_owned,
                    def: event.external_event_def_name.clone(),
                });
            }
            Some(NodeKind::ThrowEvent(event)) => {
                if !self
                    .known
                    .has_workflow_event_def(&event.workflow_event_def_name)
                {
                    self.errors.push(SpecError::MissingWorkflowEventDef {
                        thread,
                        node: node_owned,
                        def: event.workflow_event_def_name.clone(),
                    });
                }
                if let Some(content) = &event.content {
                    self.check_assignment(node_name, content, None);
                }
            }
            Some(NodeKind::UserTask(task)) => {
                if !self.known.has_user_task_def(&task.user_task_def_name) {
                    self.errors.push(SpecError::MissingUserTaskDef {
                        thread,
                        node: node_owned,
                        def: task.user_task_def_name.clone(),
                    });
                }
                for assignment in [&task.user_id, &task.user_group].into_iter().flatten() {
                    self.check_assignment(
                        node_name,
                        assignment,
                        Some(("the user or group".to_owned(), VariableType::Str)),
                    );
                }
            }
            _ => {}
        }
        for edge in &node.outgoing_edges {
            if !self.thread.nodes.contains_key(&edge.sink_node_name) {
                self.errors.push(SpecError::UnknownEdgeTarget {
                    thread: self.name.to_owned(),
                    node: node_name.to_owned(),
                    target: edge.sink_node_name.clone(),
                });
            }
            if let Some(condition) = &edge.condition {
                for side in [&condition.lhs, &condition.rhs].into_iter().flatten() {
                    self.check_assignment(node_name, side, None);
                }
            }
            for mutation in &edge.variable_mutations {
                self.check_mutation(node_name, mutation);
            }
        }
    }

    fn check_mutation(&mut self, node_name: &str, mutation: &weir_proto::VariableMutation) {
        let Some(&target) = self.variables.get(mutation.lhs_name.as_str()) else {
            self.unknown_variable(node_name, &mutation.lhs_name);
            return;
        };
        let given = match &mutation.rhs_value {
            Some(RhsValue::LiteralValue(value)) => value_type(value),
            Some(RhsValue::RhsVariableName(name)) => match self.variables.get(name.as_str()) {
                Some(&t) => Some(t),
                None => {
                    self.unknown_variable(node_name, name);
                    None
                }
            },
            Some(RhsValue::NodeOutput(output)) => {
                self.check_node_output(node_name, &output.node_name);
                None
            }
            None => None,
        };
        // Only an assignment must keep the variable's type; arithmetic and collection
        // operations are checked when they run.
        if mutation.operation() == VariableMutationType::Assign
            && let Some(given) = given
            && given != target
        {
            self.errors.push(SpecError::TypeMismatch {
                thread: self.name.to_owned(),
                node: node_name.to_owned(),
                place: format!("assignment to {:?}", mutation.lhs_name),
                expected: target,
                given,
            });
        }
    }

    /// Checks that an assignment's source exists and, when `expected` is given, that its
    /// type (known for variables and literals) matches.
    fn check_assignment(
        &mut self,
        node_name: &str,
        assignment: &VariableAssignment,
        expected: Option<(String, VariableType)>,
    ) {
        let given = match &assignment.source {
            Some(Source::VariableName(name)) => match self.variables.get(name.as_str()) {
                Some(&t) => Some(t),
                None => {
                    self.unknown_variable(node_name, name);
                    None
                }
            },
            Some(Source::LiteralValue(value)) => value_type(value),
            Some(Source::NodeOutput(output)) => {
                self.check_node_output(node_name, &output.node_name);
                None
            }
            None => None,
        };
        if let (Some((place, expected)), Some(given)) = (expected, given)
            && given != expected
        {
            self.errors.push(SpecError::TypeMismatch {
                thread: self.name.to_owned(),
                node: node_name.to_owned(),
                place,
                expected,
                given,
            });
        }
    }

    fn check_node_output(&mut self, node_name: &str, target: &str) {
        if !self.thread.nodes.contains_key(target) {
            self.errors.push(SpecError::UnknownNodeOutput {
                thread: self.name.to_owned(),
                node: node_name.to_owned(),
                target: target.to_owned(),
            });
        }
    }

    fn unknown_variable(&mut self, node_name: &str, variable: &str) {
        self.errors.push(SpecError::UnknownVariable {
            thread: self.name.to_owned(),
            node: node_name.to_owned(),
            variable: variable.to_owned(),
        });
    }

    /// Walks edges backwards from every exit node; a node never reached cannot end.
    fn check_reachable_exit(&mut self) {
        let mut reaches_exit: BTreeSet<&str> = self
            .thread
            .nodes
            .iter()
            .filter(|(_, n)| matches!(n.node, Some(NodeKind::Exit(_))))
            .map(|(name, _)| name.as_str())
            .collect();
        loop {
            let before = reaches_exit.len();
            for (name, node) in &self.thread.nodes {
                if node
                    .outgoing_edges
                    .iter()
                    .any(|e| reaches_exit.contains(e.sink_node_name.as_str()))
                {
                    reaches_exit.insert(name);
                }
            }
            if reaches_exit.len() == before {
                break;
            }
        }
        for name in self.thread.nodes.keys() {
            if !reaches_exit.contains(name.as_str()) {
                self.errors.push(SpecError::NoWayOut {
                    thread: self.name.to_owned(),
                    node: name.clone(),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_proto::VariableValue;
    use weir_proto::variable_value::Value;
    use weir_proto::{
        Edge, EntrypointNode, ExitNode, ExternalEventNode, TaskNode, ThreadVarDef, VariableDef,
        VariableMutation,
    };

    #[derive(Default)]
    struct Known {
        task_defs: BTreeMap<String, TaskDef>,
        external_events: BTreeSet<String>,
    }

    impl KnownMetadata for Known {
        fn task_def(&self, name: &str) -> Option<&TaskDef> {
            self.task_defs.get(name)
        }
        fn has_external_event_def(&self, name: &str) -> bool {
            self.external_events.contains(name)
        }
        fn has_workflow_event_def(&self, _: &str) -> bool {
            false
        }
        fn has_user_task_def(&self, _: &str) -> bool {
            false
        }
    }

    fn known() -> Known {
        let task = |name: &str, inputs: &[(&str, VariableType)]| TaskDef {
            name: name.to_owned(),
            input_vars: inputs
                .iter()
                .map(|(n, t)| VariableDef {
                    name: (*n).to_owned(),
                    var_type: (*t).into(),
                    default_value: None,
                })
                .collect(),
            ..Default::default()
        };
        Known {
            task_defs: BTreeMap::from([
                (
                    "ship-item".to_owned(),
                    task(
                        "ship-item",
                        &[
                            ("user-id", VariableType::Str),
                            ("item-id", VariableType::Str),
                        ],
                    ),
                ),
                (
                    "charge".to_owned(),
                    task("charge", &[("amount", VariableType::Int)]),
                ),
            ]),
            external_events: BTreeSet::from(["item-delivered".to_owned()]),
        }
    }

    fn var(name: &str, var_type: VariableType, default: Option<Value>) -> ThreadVarDef {
        ThreadVarDef {
            var_def: Some(VariableDef {
                name: name.to_owned(),
                var_type: var_type.into(),
                default_value: default.map(|v| VariableValue { value: Some(v) }),
            }),
            ..Default::default()
        }
    }

    fn edge(to: &str) -> Edge {
        Edge {
            sink_node_name: to.to_owned(),
            ..Default::default()
        }
    }

    fn node(kind: NodeKind, edges: Vec<Edge>) -> Node {
        Node {
            outgoing_edges: edges,
            node: Some(kind),
        }
    }

    fn variable(name: &str) -> VariableAssignment {
        VariableAssignment {
            source: Some(Source::VariableName(name.to_owned())),
        }
    }

    /// The seed's `orders` workflow, reduced: ship the item, mark it shipping, wait for delivery.
    fn orders() -> WfSpec {
        let mut set_shipping = edge("2-item-delivered");
        set_shipping.variable_mutations.push(VariableMutation {
            lhs_name: "order-status".to_owned(),
            operation: VariableMutationType::Assign.into(),
            rhs_value: Some(RhsValue::LiteralValue(VariableValue {
                value: Some(Value::Str("SHIPPING".to_owned())),
            })),
        });
        let nodes = BTreeMap::from([
            (
                "0-entrypoint".to_owned(),
                node(
                    NodeKind::Entrypoint(EntrypointNode {}),
                    vec![edge("1-ship-item")],
                ),
            ),
            (
                "1-ship-item".to_owned(),
                node(
                    NodeKind::Task(TaskNode {
                        task_def_name: "ship-item".to_owned(),
                        args: vec![variable("user-id"), variable("item-id")],
                    }),
                    vec![set_shipping],
                ),
            ),
            (
                "2-item-delivered".to_owned(),
                node(
                    NodeKind::ExternalEvent(ExternalEventNode {
                        external_event_def_name: "item-delivered".to_owned(),
                        timeout_seconds: None,
                    }),
                    vec![edge("3-exit")],
                ),
            ),
            (
                "3-exit".to_owned(),
                node(NodeKind::Exit(ExitNode::default()), Vec::new()),
            ),
        ]);
        WfSpec {
            thread_specs: BTreeMap::from([(
                "entrypoint".to_owned(),
                ThreadSpec {
                    nodes,
                    variable_defs: vec![
                        var("user-id", VariableType::Str, None),
                        var("item-id", VariableType::Str, None),
                        var(
                            "order-status",
                            VariableType::Str,
                            Some(Value::Str("PENDING".to_owned())),
                        ),
                    ],
                },
            )]),
            entrypoint_thread_name: "entrypoint".to_owned(),
            ..Default::default()
        }
    }

    fn thread(spec: &mut WfSpec) -> &mut ThreadSpec {
        spec.thread_specs
            .get_mut("entrypoint")
            .expect("entrypoint thread")
    }

    fn messages(spec: &WfSpec) -> Vec<String> {
        validate_wf_spec(spec, &known())
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn the_orders_workflow_is_valid() {
        assert_eq!(messages(&orders()), Vec::<String>::new());
    }

    #[test]
    fn a_missing_task_def_is_named() {
        let mut spec = orders();
        if let Some(NodeKind::Task(task)) = thread(&mut spec)
            .nodes
            .get_mut("1-ship-item")
            .and_then(|n| n.node.as_mut())
        {
            task.task_def_name = "ship-itme".to_owned();
        }
        assert_eq!(
            messages(&spec),
            vec!["thread entrypoint, node 1-ship-item: TaskDef \"ship-itme\" does not exist"]
        );
    }

    #[test]
    fn an_unknown_variable_is_named() {
        let mut spec = orders();
        thread(&mut spec).variable_defs.remove(1);
        assert_eq!(
            messages(&spec),
            vec![
                "thread entrypoint, node 1-ship-item: variable \"item-id\" is not declared in this thread"
            ]
        );
    }

    #[test]
    fn type_mismatches_are_refused() {
        let mut spec = orders();
        // A STR literal where an INT variable is assigned, and an INT argument given a STR.
        thread(&mut spec).variable_defs[2] = var("order-status", VariableType::Int, None);
        thread(&mut spec).nodes.insert(
            "1-ship-item".to_owned(),
            node(
                NodeKind::Task(TaskNode {
                    task_def_name: "charge".to_owned(),
                    args: vec![variable("user-id")],
                }),
                orders().thread_specs["entrypoint"].nodes["1-ship-item"]
                    .outgoing_edges
                    .clone(),
            ),
        );
        assert_eq!(
            messages(&spec),
            vec![
                "thread entrypoint, node 1-ship-item: argument \"amount\" of charge expects Int, but is given Str",
                "thread entrypoint, node 1-ship-item: assignment to \"order-status\" expects Int, but is given Str",
            ]
        );
        let mut bad_default = orders();
        thread(&mut bad_default).variable_defs[0] =
            var("user-id", VariableType::Str, Some(Value::Int(3)));
        assert_eq!(
            messages(&bad_default),
            vec![
                "thread entrypoint: variable \"user-id\" has a default of type Int, but is declared Str"
            ]
        );
    }

    #[test]
    fn a_cycle_without_exit_is_refused() {
        let mut spec = orders();
        // The event node loops back to the task instead of going on to the exit.
        thread(&mut spec)
            .nodes
            .get_mut("2-item-delivered")
            .expect("node")
            .outgoing_edges = vec![edge("1-ship-item")];
        assert_eq!(
            messages(&spec),
            vec![
                "thread entrypoint, node 0-entrypoint: no exit node can be reached from here (a cycle without exit, or a dead end)",
                "thread entrypoint, node 1-ship-item: no exit node can be reached from here (a cycle without exit, or a dead end)",
                "thread entrypoint, node 2-item-delivered: no exit node can be reached from here (a cycle without exit, or a dead end)",
            ]
        );
    }

    #[test]
    fn broken_references_and_structure_are_named() {
        let mut spec = orders();
        spec.entrypoint_thread_name = "main".to_owned();
        thread(&mut spec)
            .nodes
            .get_mut("2-item-delivered")
            .expect("node")
            .node = Some(NodeKind::ExternalEvent(ExternalEventNode {
            external_event_def_name: "item-lost".to_owned(),
            timeout_seconds: None,
        }));
        thread(&mut spec)
            .nodes
            .get_mut("3-exit")
            .expect("node")
            .outgoing_edges = vec![edge("4-nowhere")];
        thread(&mut spec).nodes.insert(
            "5-second-entry".to_owned(),
            node(
                NodeKind::Entrypoint(EntrypointNode {}),
                vec![edge("3-exit")],
            ),
        );
        assert_eq!(
            messages(&spec),
            vec![
                "the entrypoint thread \"main\" is not among the spec's threads",
                "thread entrypoint: it has 2 entrypoint nodes; it needs exactly one",
                "thread entrypoint, node 2-item-delivered: ExternalEventDef \"item-lost\" does not exist",
                "thread entrypoint, node 3-exit: an edge leads to \"4-nowhere\", which is not a node of this thread",
            ]
        );
    }
}
