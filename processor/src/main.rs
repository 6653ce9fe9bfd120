//! `weir`: the command line of the weir processor.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args as ClapArgs, Parser, Subcommand};
use weir_processor::cli::commands::{self, RunArgs, WfRunAction, parse_var};
use weir_processor::cli::get::GetTarget;
use weir_processor::cli::output::OutputTopic;
use weir_processor::client::WeirClient;
use weir_processor::config::WeirConfig;
use weir_processor::flows::naming::ModelVersion;
use weir_processor::flows::plan::PlanOptions;
use weir_processor::spec_file::{self, SpecKind};
use weir_processor::topics::{CoreTopics, DEFAULT_TENANT};
use weir_processor::{cli, lifecycle};
use weir_proto::{DataModelVersion, VariableValue};

/// mimalloc for every allocation of this process (why: the workspace Cargo.toml).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// weir: a Kafka-native stream processor. Configuration comes from `LHS_*` variables.
#[derive(Debug, Parser)]
#[command(name = "weir", version)]
struct Args {
    /// Seconds to wait for the answer to a command.
    #[arg(long, global = true, value_name = "SECONDS", default_value_t = 30)]
    timeout: u64,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Look at the cluster's topics.
    #[command(subcommand)]
    Topics(TopicsCommand),
    /// Read a tenant's output topics.
    #[command(subcommand)]
    Output(OutputCommand),
    /// Plan and apply a flows manifest (data models and flows).
    #[command(subcommand)]
    Flows(FlowsCommand),
    /// Read a data model version's table as committed.
    #[command(subcommand)]
    Table(TableCommand),
    /// Run the workflow core until SIGTERM or SIGINT.
    Server,
    /// Create a tenant, TaskDef, WfSpec or other definition from a JSON or YAML file.
    Put {
        /// What the file defines.
        kind: SpecKind,
        /// The spec file; YAML if it ends in .yaml or .yml, else JSON.
        file: PathBuf,
        #[command(flatten)]
        tenant: Tenant,
    },
    /// Start a WfRun of the latest (or the given) version of a WfSpec.
    Run {
        /// Name of the WfSpec.
        wf_spec: String,
        /// A variable of the entrypoint thread; sent as text, the core converts it.
        #[arg(long = "var", value_name = "NAME=VALUE", value_parser = parse_var)]
        vars: Vec<(String, VariableValue)>,
        /// Id of the new WfRun; a fresh one when not given.
        #[arg(long)]
        id: Option<String>,
        /// Major version to run; the latest when not given.
        #[arg(long)]
        major_version: Option<i32>,
        /// Revision to run; the latest of the major version when not given.
        #[arg(long)]
        revision: Option<i32>,
        /// Do not wait for the core to answer.
        #[arg(long)]
        no_wait: bool,
        #[command(flatten)]
        tenant: Tenant,
    },
    /// Post an external event to a WfRun.
    PostEvent {
        wf_run: String,
        /// Name of the ExternalEventDef.
        event_def: String,
        /// The content: a JSON number, boolean, object or array keeps its type; anything
        /// else is text.
        value: String,
        /// Id of the event; posting the same guid twice has no further effect.
        #[arg(long)]
        guid: Option<String>,
        #[command(flatten)]
        tenant: Tenant,
    },
    /// Complete, assign or cancel a user task.
    #[command(subcommand)]
    UserTask(UserTaskCommand),
    /// Halt a WfRun.
    Stop {
        wf_run: String,
        #[command(flatten)]
        tenant: Tenant,
    },
    /// Resume a halted WfRun.
    Resume {
        wf_run: String,
        #[command(flatten)]
        tenant: Tenant,
    },
    /// Delete a WfRun and everything it created.
    Delete {
        wf_run: String,
        #[command(flatten)]
        tenant: Tenant,
    },
    /// Read a WfRun, its objects or a definition from any instance's HTTP queries.
    #[command(subcommand)]
    Get(GetCommand),
}

#[derive(Debug, ClapArgs)]
struct GetOptions {
    /// The tenant the object belongs to.
    #[arg(long, default_value = DEFAULT_TENANT)]
    tenant: String,
    /// Base URL of any instance's HTTP server [default: http://127.0.0.1:{LHS_METRICS_PORT
    /// or 9100}].
    #[arg(long, env = "LHS_QUERY_URL")]
    url: Option<String>,
}

#[derive(Debug, Subcommand)]
enum GetCommand {
    /// The tenant itself.
    Tenant(GetOptions),
    /// A WfRun.
    WfRun {
        id: String,
        #[command(flatten)]
        options: GetOptions,
    },
    /// A WfRun's TaskRuns.
    TaskRuns {
        id: String,
        #[command(flatten)]
        options: GetOptions,
    },
    /// A WfRun's variables, every thread's.
    Variables {
        id: String,
        #[command(flatten)]
        options: GetOptions,
    },
    /// The external events posted to a WfRun.
    ExternalEvents {
        id: String,
        #[command(flatten)]
        options: GetOptions,
    },
    /// A WfRun's UserTaskRuns.
    UserTaskRuns {
        id: String,
        #[command(flatten)]
        options: GetOptions,
    },
    /// A WfRun's NodeRuns.
    NodeRuns {
        id: String,
        #[command(flatten)]
        options: GetOptions,
    },
    /// A WfSpec: the latest version, or the given one.
    WfSpec {
        name: String,
        /// Major version; its latest revision unless --revision is given.
        #[arg(long)]
        major: Option<i32>,
        /// Revision of the major version.
        #[arg(long, requires = "major")]
        revision: Option<i32>,
        #[command(flatten)]
        options: GetOptions,
    },
    /// A TaskDef.
    TaskDef {
        name: String,
        #[command(flatten)]
        options: GetOptions,
    },
    /// An ExternalEventDef.
    ExternalEventDef {
        name: String,
        #[command(flatten)]
        options: GetOptions,
    },
    /// A WorkflowEventDef.
    WorkflowEventDef {
        name: String,
        #[command(flatten)]
        options: GetOptions,
    },
    /// A UserTaskDef.
    UserTaskDef {
        name: String,
        #[command(flatten)]
        options: GetOptions,
    },
}

impl GetCommand {
    /// What to read, and the options it came with.
    fn into_target(self) -> (GetTarget, GetOptions) {
        match self {
            Self::Tenant(options) => (GetTarget::Tenant, options),
            Self::WfRun { id, options } => (GetTarget::WfRun(id), options),
            Self::TaskRuns { id, options } => (GetTarget::TaskRuns(id), options),
            Self::Variables { id, options } => (GetTarget::Variables(id), options),
            Self::ExternalEvents { id, options } => (GetTarget::ExternalEvents(id), options),
            Self::UserTaskRuns { id, options } => (GetTarget::UserTaskRuns(id), options),
            Self::NodeRuns { id, options } => (GetTarget::NodeRuns(id), options),
            Self::WfSpec {
                name,
                major,
                revision,
                options,
            } => (
                GetTarget::WfSpec {
                    name,
                    major,
                    revision,
                },
                options,
            ),
            Self::TaskDef { name, options } => (GetTarget::TaskDef(name), options),
            Self::ExternalEventDef { name, options } => {
                (GetTarget::ExternalEventDef(name), options)
            }
            Self::WorkflowEventDef { name, options } => {
                (GetTarget::WorkflowEventDef(name), options)
            }
            Self::UserTaskDef { name, options } => (GetTarget::UserTaskDef(name), options),
        }
    }
}

#[derive(Debug, ClapArgs)]
struct Tenant {
    /// The tenant the command belongs to.
    #[arg(long, default_value = DEFAULT_TENANT)]
    tenant: String,
}

#[derive(Debug, Subcommand)]
enum UserTaskCommand {
    /// Fill in a user task.
    Complete {
        wf_run: String,
        user_task_guid: String,
        /// The person completing it.
        #[arg(long)]
        user: String,
        /// A field of the form; sent as text, the core converts it.
        #[arg(long = "result", value_name = "NAME=VALUE", value_parser = parse_var)]
        results: Vec<(String, VariableValue)>,
        #[command(flatten)]
        tenant: Tenant,
    },
    /// Assign a user task to a person or a group.
    #[command(group(clap::ArgGroup::new("assignee").required(true).multiple(true)))]
    Assign {
        wf_run: String,
        user_task_guid: String,
        /// The person to assign it to.
        #[arg(long, group = "assignee")]
        user: Option<String>,
        /// The group to assign it to.
        #[arg(long, group = "assignee")]
        group: Option<String>,
        /// Take the task away from a person who already holds it.
        #[arg(long = "override")]
        override_claim: bool,
        #[command(flatten)]
        tenant: Tenant,
    },
    /// Cancel a user task.
    Cancel {
        wf_run: String,
        user_task_guid: String,
        /// Why it is cancelled.
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        tenant: Tenant,
    },
}

#[derive(Debug, Subcommand)]
enum TopicsCommand {
    /// List topics, by default only this cluster's (`{LHS_CLUSTER_ID}_*`).
    List {
        /// List every topic in the Kafka cluster.
        #[arg(long)]
        all: bool,
    },
    /// Show a topic's partitions, leaders and configs.
    Describe { topic: String },
    /// Print records as JSON lines as they arrive, until interrupted.
    Tail {
        topic: String,
        /// Start at the beginning of each partition instead of its end.
        #[arg(long)]
        from_beginning: bool,
    },
}

#[derive(Debug, ClapArgs)]
struct PlanFlags {
    /// The manifest file; YAML if it ends in .yaml or .yml, else JSON.
    file: PathBuf,
    /// Partitions of a new ingestion topic (default: LHS_CLUSTER_PARTITIONS).
    #[arg(long, value_parser = clap::value_parser!(i32).range(1..))]
    partitions: Option<i32>,
    /// Delete the topics and tables of models and flows that left the manifest.
    #[arg(long)]
    allow_data_removal: bool,
}

#[derive(Debug, Subcommand)]
enum FlowsCommand {
    /// Print what `apply` would create, update, remove and keep.
    Plan(PlanFlags),
    /// Create and remove what the plan says, then store the manifest as applied.
    Apply(PlanFlags),
}

#[derive(Debug, Subcommand)]
enum TableCommand {
    /// Print the row of one key as a JSON line.
    Get {
        /// Model name.
        model: String,
        /// Model version, `MAJOR.MINOR`.
        #[arg(value_parser = cli::flows::parse_version)]
        version: DataModelVersion,
        key: String,
    },
    /// Print the rows in key order as JSON lines.
    Scan {
        /// Model name.
        model: String,
        /// Model version, `MAJOR.MINOR`.
        #[arg(value_parser = cli::flows::parse_version)]
        version: DataModelVersion,
        /// Print at most this many rows.
        #[arg(long)]
        limit: Option<usize>,
    },
}

#[derive(Debug, Subcommand)]
enum OutputCommand {
    /// Print the tenant's execution-output records (every partition) as JSON lines with
    /// their values decoded, as they arrive, until interrupted.
    Tail {
        /// Read the metadata-output topic instead.
        #[arg(long)]
        metadata: bool,
        /// Start at the beginning of each partition instead of its end.
        #[arg(long)]
        from_beginning: bool,
        #[command(flatten)]
        tenant: Tenant,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    // The server reports its life cycle; one-shot commands print only their answer.
    lifecycle::init_logging(if matches!(args.command, Command::Server) {
        "info"
    } else {
        "warn"
    });
    lifecycle::disable_transparent_huge_pages();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        // The reader of our output went away (`weir topics tail | head`): not an error.
        Err(error)
            if error
                .downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            ExitCode::SUCCESS
        }
        Err(error) => {
            // One line a person can act on: the error and its causes, no backtrace.
            let _ = writeln!(std::io::stderr(), "weir: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let config = WeirConfig::from_env()?;
    let kafka = config.kafka();
    let mut out = std::io::stdout().lock();
    let timeout = Duration::from_secs(args.timeout);
    let connect = || async {
        Ok::<_, anyhow::Error>(WeirClient::connect(&config).await?.with_timeout(timeout))
    };
    match args.command {
        Command::Server => commands::server(&config, &mut out).await,
        Command::Put { kind, file, tenant } => {
            // A bad file is reported before the cluster is even asked.
            let request = spec_file::read(kind, &file)?;
            commands::put(&connect().await?, &tenant.tenant, request, &mut out).await
        }
        Command::Run {
            wf_spec,
            vars,
            id,
            major_version,
            revision,
            no_wait,
            tenant,
        } => {
            let args = RunArgs {
                wf_spec,
                variables: vars,
                id,
                major_version,
                revision,
                no_wait,
            };
            commands::run(&connect().await?, &tenant.tenant, args, &mut out).await
        }
        Command::PostEvent {
            wf_run,
            event_def,
            value,
            guid,
            tenant,
        } => {
            commands::post_event(
                &connect().await?,
                &tenant.tenant,
                &wf_run,
                &event_def,
                &value,
                guid,
                &mut out,
            )
            .await
        }
        Command::UserTask(UserTaskCommand::Complete {
            wf_run,
            user_task_guid,
            user,
            results,
            tenant,
        }) => {
            commands::complete_user_task(
                &connect().await?,
                &tenant.tenant,
                &wf_run,
                &user_task_guid,
                &user,
                results,
                &mut out,
            )
            .await
        }
        Command::UserTask(UserTaskCommand::Assign {
            wf_run,
            user_task_guid,
            user,
            group,
            override_claim,
            tenant,
        }) => {
            commands::assign_user_task(
                &connect().await?,
                &tenant.tenant,
                &wf_run,
                &user_task_guid,
                user,
                group,
                override_claim,
                &mut out,
            )
            .await
        }
        Command::UserTask(UserTaskCommand::Cancel {
            wf_run,
            user_task_guid,
            reason,
            tenant,
        }) => {
            commands::cancel_user_task(
                &connect().await?,
                &tenant.tenant,
                &wf_run,
                &user_task_guid,
                reason,
                &mut out,
            )
            .await
        }
        Command::Stop { wf_run, tenant } => {
            let client = connect().await?;
            commands::wf_run_action(
                &client,
                &tenant.tenant,
                &wf_run,
                WfRunAction::Stop,
                &mut out,
            )
            .await
        }
        Command::Resume { wf_run, tenant } => {
            let client = connect().await?;
            commands::wf_run_action(
                &client,
                &tenant.tenant,
                &wf_run,
                WfRunAction::Resume,
                &mut out,
            )
            .await
        }
        Command::Delete { wf_run, tenant } => {
            let client = connect().await?;
            commands::wf_run_action(
                &client,
                &tenant.tenant,
                &wf_run,
                WfRunAction::Delete,
                &mut out,
            )
            .await
        }
        Command::Get(command) => {
            let (target, options) = command.into_target();
            let url = options
                .url
                .unwrap_or_else(|| cli::get::default_url(&config));
            cli::get::get(&url, &options.tenant, &target, timeout, &mut out).await
        }
        Command::Topics(TopicsCommand::List { all }) => {
            let prefix = format!("{}_", config.cluster_id);
            cli::topics::list(&kafka, (!all).then_some(prefix.as_str()), &mut out).await
        }
        Command::Topics(TopicsCommand::Describe { topic }) => {
            cli::topics::describe(&kafka, &topic, &mut out).await
        }
        Command::Topics(TopicsCommand::Tail {
            topic,
            from_beginning,
        }) => {
            cli::topics::tail(
                &kafka,
                &topic,
                from_beginning,
                lifecycle::shutdown_signal(),
                &mut out,
            )
            .await
        }
        Command::Flows(FlowsCommand::Plan(flags)) => {
            let options = plan_options(&config, &flags);
            cli::flows::plan(&config, &flags.file, options, &mut out).await
        }
        Command::Flows(FlowsCommand::Apply(flags)) => {
            let options = plan_options(&config, &flags);
            cli::flows::apply(&config, &flags.file, options, &mut out).await
        }
        Command::Table(TableCommand::Get {
            model,
            version,
            key,
        }) => {
            let model = ModelVersion::new(model, &version);
            cli::flows::table_get(&config, &model, &key, &mut out).await
        }
        Command::Table(TableCommand::Scan {
            model,
            version,
            limit,
        }) => {
            let model = ModelVersion::new(model, &version);
            cli::flows::table_scan(&config, &model, limit, &mut out).await
        }
        Command::Output(OutputCommand::Tail {
            metadata,
            from_beginning,
            tenant,
        }) => {
            let which = if metadata {
                OutputTopic::Metadata
            } else {
                OutputTopic::Execution
            };
            cli::output::tail(
                &kafka,
                &CoreTopics::new(&config),
                &tenant.tenant,
                which,
                from_beginning,
                lifecycle::shutdown_signal(),
                &mut out,
            )
            .await
        }
    }
}

fn plan_options(config: &WeirConfig, flags: &PlanFlags) -> PlanOptions {
    PlanOptions {
        partitions: flags.partitions.unwrap_or(config.cluster_partitions),
        allow_data_removal: flags.allow_data_removal,
    }
}
