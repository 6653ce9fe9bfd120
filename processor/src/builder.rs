//! A typed builder for `WfSpec`s, so a workflow reads like the seed's example:
//!
//! ```
//! use weir_processor::builder::WorkflowBuilder;
//!
//! let wf = WorkflowBuilder::new("orders");
//! let user_id = wf.declare_str("user-id");
//! let item_id = wf.declare_str("item-id");
//! let order_status = wf.declare_str("order-status").with_default("PENDING").as_public();
//! let price = wf.execute("fetch-price", (&item_id,));
//! wf.execute("charge-credit-card", (&user_id, &price));
//! wf.execute("ship-item", (&user_id, &item_id));
//! order_status.assign("SHIPPING");
//! wf.wait_for_event("item-delivered");
//! order_status.assign("COMPLETED");
//! let spec = wf.build();
//! assert_eq!(spec.thread_specs["entrypoint"].nodes.len(), 6);
//! ```
//!
//! Nodes run in the order they are added, each named `{n}-{name}-{KIND}` as LittleHorse
//! names them. An `assign` between two nodes becomes a mutation on the edge that joins
//! them; variables are private unless marked `.as_public()`.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use weir_proto::node::Node as NodeKind;
use weir_proto::variable_assignment::Source;
use weir_proto::variable_mutation::RhsValue;
use weir_proto::variable_value::Value;
use weir_proto::{
    Edge, EntrypointNode, ExitNode, ExternalEventNode, Node, NodeOutputReference, TaskNode,
    ThreadSpec, ThreadVarDef, VariableAssignment, VariableDef, VariableMutation,
    VariableMutationType, VariableType, VariableValue, WfRunVariableAccessLevel, WfSpec, WfSpecId,
};

/// The thread being built: its nodes in order and the mutations waiting for the next edge.
#[derive(Debug, Default)]
struct ThreadState {
    nodes: Vec<(String, NodeKind)>,
    /// Mutations to put on the edge from the last node to the next one.
    pending: Vec<VariableMutation>,
    /// Edges' mutations, by the index of the node they leave.
    edge_mutations: BTreeMap<usize, Vec<VariableMutation>>,
    variables: Vec<ThreadVarDef>,
}

impl ThreadState {
    fn add(&mut self, name: &str, kind: NodeKind) -> String {
        let label = match &kind {
            NodeKind::Entrypoint(_) => "ENTRYPOINT",
            NodeKind::Exit(_) => "EXIT",
            NodeKind::Task(_) => "TASK",
            NodeKind::ExternalEvent(_) => "EXTERNAL_EVENT",
            NodeKind::ThrowEvent(_) => "THROW_EVENT",
            NodeKind::UserTask(_) => "USER_TASK",
        };
        if let Some(last) = self.nodes.len().checked_sub(1) {
            let pending = std::mem::take(&mut self.pending);
            self.edge_mutations.entry(last).or_default().extend(pending);
        }
        let node_name = format!("{}-{name}-{label}", self.nodes.len());
        self.nodes.push((node_name.clone(), kind));
        node_name
    }
}

/// Builds one workflow: an entrypoint thread whose nodes run one after another.
#[derive(Debug)]
pub struct WorkflowBuilder {
    name: String,
    thread: Rc<RefCell<ThreadState>>,
}

/// A declared variable; pass it as a task argument, or assign to it.
#[derive(Debug, Clone)]
pub struct WfVariable {
    name: String,
    index: usize,
    thread: Rc<RefCell<ThreadState>>,
}

/// The output of a task node, usable as a later node's argument.
#[derive(Debug, Clone)]
pub struct NodeOutput {
    node_name: String,
}

impl WorkflowBuilder {
    /// A workflow named `name`, starting at its entrypoint.
    pub fn new(name: &str) -> Self {
        let mut thread = ThreadState::default();
        thread.add("entrypoint", NodeKind::Entrypoint(EntrypointNode {}));
        Self {
            name: name.to_owned(),
            thread: Rc::new(RefCell::new(thread)),
        }
    }

    /// Declares a text variable (private, no default).
    pub fn declare_str(&self, name: &str) -> WfVariable {
        self.declare(name, VariableType::Str)
    }

    /// Declares an integer variable (private, no default).
    pub fn declare_int(&self, name: &str) -> WfVariable {
        self.declare(name, VariableType::Int)
    }

    /// Declares a variable of any type (private, no default).
    pub fn declare(&self, name: &str, var_type: VariableType) -> WfVariable {
        let mut thread = self.thread.borrow_mut();
        thread.variables.push(ThreadVarDef {
            var_def: Some(VariableDef {
                name: name.to_owned(),
                var_type: var_type.into(),
                default_value: None,
            }),
            required: false,
            access_level: WfRunVariableAccessLevel::PrivateVar.into(),
            enable_entity_events: None,
        });
        WfVariable {
            name: name.to_owned(),
            index: thread.variables.len() - 1,
            thread: Rc::clone(&self.thread),
        }
    }

    /// Runs TaskDef `task_def` with `args` and returns its output.
    pub fn execute(&self, task_def: &str, args: impl TaskArgs) -> NodeOutput {
        let node_name = self.thread.borrow_mut().add(
            task_def,
            NodeKind::Task(TaskNode {
                task_def_name: task_def.to_owned(),
                args: args.assignments(),
            }),
        );
        NodeOutput { node_name }
    }

    /// Waits until an `ExternalEvent` of `event_def` arrives for the run (or was posted
    /// before the run got here).
    pub fn wait_for_event(&self, event_def: &str) {
        self.thread.borrow_mut().add(
            event_def,
            NodeKind::ExternalEvent(ExternalEventNode {
                external_event_def_name: event_def.to_owned(),
                timeout_seconds: None,
            }),
        );
    }

    /// Ends the workflow and returns its spec (name set, version left to the server).
    pub fn build(self) -> WfSpec {
        let mut thread = self.thread.borrow_mut();
        thread.add("exit", NodeKind::Exit(ExitNode::default()));
        let names: Vec<String> = thread.nodes.iter().map(|(n, _)| n.clone()).collect();
        let mut edge_mutations = std::mem::take(&mut thread.edge_mutations);
        let nodes = thread
            .nodes
            .iter()
            .enumerate()
            .map(|(i, (name, kind))| {
                let outgoing_edges = names
                    .get(i + 1)
                    .map(|next| Edge {
                        sink_node_name: next.clone(),
                        condition: None,
                        variable_mutations: edge_mutations.remove(&i).unwrap_or_default(),
                    })
                    .into_iter()
                    .collect();
                (
                    name.clone(),
                    Node {
                        outgoing_edges,
                        node: Some(kind.clone()),
                    },
                )
            })
            .collect();
        WfSpec {
            id: Some(WfSpecId {
                name: self.name.clone(),
                major_version: 0,
                revision: 0,
            }),
            created_at: None,
            thread_specs: BTreeMap::from([(
                "entrypoint".to_owned(),
                ThreadSpec {
                    nodes,
                    variable_defs: thread.variables.clone(),
                },
            )]),
            entrypoint_thread_name: "entrypoint".to_owned(),
            enable_entity_events: None,
        }
    }
}

impl WfVariable {
    /// Sets the value a run starts with when the caller gives none.
    pub fn with_default(self, value: impl Into<Literal>) -> Self {
        self.update(|v| {
            if let Some(def) = v.var_def.as_mut() {
                def.default_value = Some(value.into().0);
            }
        });
        self
    }

    /// Makes the variable public: its changes go to the output topic by default.
    pub fn as_public(self) -> Self {
        self.update(|v| v.access_level = WfRunVariableAccessLevel::PublicVar.into());
        self
    }

    /// Requires callers to give the variable a value when they start a run.
    pub fn required(self) -> Self {
        self.update(|v| v.required = true);
        self
    }

    /// Keeps the variable's changes out of the output topic, whatever the tenant default.
    pub fn without_output_topic(self) -> Self {
        self.update(|v| v.enable_entity_events = Some(false));
        self
    }

    /// Sets the variable to `value` when the run leaves the node added last.
    pub fn assign(&self, value: impl Into<Literal>) {
        self.thread.borrow_mut().pending.push(VariableMutation {
            lhs_name: self.name.clone(),
            operation: VariableMutationType::Assign.into(),
            rhs_value: Some(RhsValue::LiteralValue(value.into().0)),
        });
    }

    fn update(&self, change: impl FnOnce(&mut ThreadVarDef)) {
        if let Some(def) = self.thread.borrow_mut().variables.get_mut(self.index) {
            change(def);
        }
    }
}

/// A literal value for a default or an assignment.
#[derive(Debug, Clone)]
pub struct Literal(VariableValue);

impl From<&str> for Literal {
    fn from(value: &str) -> Self {
        Self(VariableValue {
            value: Some(Value::Str(value.to_owned())),
        })
    }
}

impl From<i64> for Literal {
    fn from(value: i64) -> Self {
        Self(VariableValue {
            value: Some(Value::Int(value)),
        })
    }
}

/// Something a task can take as an argument: a variable or an earlier node's output.
pub trait TaskArg {
    fn assignment(&self) -> VariableAssignment;
}

impl TaskArg for WfVariable {
    fn assignment(&self) -> VariableAssignment {
        VariableAssignment {
            source: Some(Source::VariableName(self.name.clone())),
        }
    }
}

impl TaskArg for NodeOutput {
    fn assignment(&self) -> VariableAssignment {
        VariableAssignment {
            source: Some(Source::NodeOutput(NodeOutputReference {
                node_name: self.node_name.clone(),
                field: None,
            })),
        }
    }
}

/// A task's arguments: `()`, or a tuple of one to four [`TaskArg`]s.
pub trait TaskArgs {
    fn assignments(&self) -> Vec<VariableAssignment>;
}

impl TaskArgs for () {
    fn assignments(&self) -> Vec<VariableAssignment> {
        Vec::new()
    }
}

impl<A: TaskArg> TaskArgs for (&A,) {
    fn assignments(&self) -> Vec<VariableAssignment> {
        vec![self.0.assignment()]
    }
}

impl<A: TaskArg, B: TaskArg> TaskArgs for (&A, &B) {
    fn assignments(&self) -> Vec<VariableAssignment> {
        vec![self.0.assignment(), self.1.assignment()]
    }
}

impl<A: TaskArg, B: TaskArg, C: TaskArg> TaskArgs for (&A, &B, &C) {
    fn assignments(&self) -> Vec<VariableAssignment> {
        vec![
            self.0.assignment(),
            self.1.assignment(),
            self.2.assignment(),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::validation::{KnownMetadata, validate_wf_spec};
    use weir_proto::TaskDef;

    fn orders() -> WfSpec {
        let wf = WorkflowBuilder::new("orders");
        let user_id = wf.declare_str("user-id");
        let item_id = wf.declare_str("item-id");
        let order_status = wf
            .declare_str("order-status")
            .with_default("PENDING")
            .as_public();
        let price = wf.execute("fetch-price", (&item_id,));
        wf.execute("charge-credit-card", (&user_id, &price));
        wf.execute("ship-item", (&user_id, &item_id));
        order_status.assign("SHIPPING");
        wf.wait_for_event("item-delivered");
        order_status.assign("COMPLETED");
        wf.build()
    }

    struct OrdersMetadata(BTreeMap<String, TaskDef>);

    impl KnownMetadata for OrdersMetadata {
        fn task_def(&self, name: &str) -> Option<&TaskDef> {
            self.0.get(name)
        }
        fn has_external_event_def(&self, name: &str) -> bool {
            name == "item-delivered"
        }
        fn has_workflow_event_def(&self, _: &str) -> bool {
            false
        }
        fn has_user_task_def(&self, _: &str) -> bool {
            false
        }
    }

    #[test]
    fn the_seed_orders_workflow_builds_into_a_valid_spec() {
        let spec = orders();
        let thread = &spec.thread_specs["entrypoint"];
        let names: Vec<&str> = thread.nodes.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            vec![
                "0-entrypoint-ENTRYPOINT",
                "1-fetch-price-TASK",
                "2-charge-credit-card-TASK",
                "3-ship-item-TASK",
                "4-item-delivered-EXTERNAL_EVENT",
                "5-exit-EXIT",
            ]
        );
        // `order-status = SHIPPING` rides the edge out of ship-item, `COMPLETED` the one
        // out of the event.
        let mutation = |node: &str| {
            thread.nodes[node].outgoing_edges[0]
                .variable_mutations
                .clone()
        };
        let literal = |m: &VariableMutation| match &m.rhs_value {
            Some(RhsValue::LiteralValue(VariableValue {
                value: Some(Value::Str(s)),
            })) => s.clone(),
            other => panic!("unexpected {other:?}"),
        };
        assert_eq!(
            mutation("3-ship-item-TASK")
                .iter()
                .map(literal)
                .collect::<Vec<_>>(),
            vec!["SHIPPING"]
        );
        assert_eq!(
            mutation("4-item-delivered-EXTERNAL_EVENT")
                .iter()
                .map(literal)
                .collect::<Vec<_>>(),
            vec!["COMPLETED"]
        );
        assert!(thread.nodes["5-exit-EXIT"].outgoing_edges.is_empty());
        let status = &thread.variable_defs[2];
        assert_eq!(status.access_level(), WfRunVariableAccessLevel::PublicVar);
        assert_eq!(
            thread.variable_defs[0].access_level(),
            WfRunVariableAccessLevel::PrivateVar
        );

        let task = |name: &str, inputs: &[&str]| TaskDef {
            name: name.to_owned(),
            input_vars: inputs
                .iter()
                .map(|n| VariableDef {
                    name: (*n).to_owned(),
                    var_type: VariableType::Str.into(),
                    default_value: None,
                })
                .collect(),
            ..Default::default()
        };
        let known = OrdersMetadata(BTreeMap::from([
            ("fetch-price".to_owned(), task("fetch-price", &["item-id"])),
            (
                "charge-credit-card".to_owned(),
                task("charge-credit-card", &["user-id", "price"]),
            ),
            (
                "ship-item".to_owned(),
                task("ship-item", &["user-id", "item-id"]),
            ),
        ]));
        assert_eq!(validate_wf_spec(&spec, &known), Vec::new());
    }

    #[test]
    fn output_topic_switches_land_on_the_variable() {
        let wf = WorkflowBuilder::new("w");
        let secret = wf
            .declare_int("secret")
            .as_public()
            .without_output_topic()
            .required();
        drop(secret);
        let spec = wf.build();
        let var = &spec.thread_specs["entrypoint"].variable_defs[0];
        assert_eq!(var.enable_entity_events, Some(false));
        assert!(var.required);
        assert_eq!(var.access_level(), WfRunVariableAccessLevel::PublicVar);
    }
}
