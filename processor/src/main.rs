//! `weir`: the command line of the weir processor.

use std::io::Write;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use weir_processor::config::WeirConfig;
use weir_processor::{cli, lifecycle};

/// weir: a Kafka-native stream processor. Configuration comes from `LHS_*` variables.
#[derive(Debug, Parser)]
#[command(name = "weir", version)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Look at the cluster's topics.
    #[command(subcommand)]
    Topics(TopicsCommand),
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

#[tokio::main]
async fn main() -> ExitCode {
    lifecycle::init_logging("warn");
    let args = Args::parse();
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
    match args.command {
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
    }
}
