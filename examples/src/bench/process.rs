//! A child process the bench measures (the `keyed-count` processor, a `weir server`):
//! started with its log in a file, watched on stdout until it says it runs, read for
//! its peak RSS and its log lines, and stopped with SIGTERM (killed if it lingers).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use super::memory;

/// How long a process may take to say it runs.
const START_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a stopping process may take to commit and exit.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// A running child process of the bench.
#[derive(Debug)]
pub struct ChildProcess {
    name: String,
    child: Child,
    pid: u32,
    started_at: Instant,
    ready_at: Instant,
    log: PathBuf,
}

impl ChildProcess {
    /// Starts `command` (its stderr to the file `log`) and waits until a line of its
    /// stdout contains `ready_line`. `name` is what messages call it.
    pub async fn start(
        name: &str,
        mut command: Command,
        log: PathBuf,
        ready_line: &str,
    ) -> anyhow::Result<Self> {
        if let Some(dir) = log.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let log_file =
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let started_at = Instant::now();
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        let pid = child
            .id()
            .with_context(|| format!("the {name} process has no pid"))?;
        let stdout = child
            .stdout
            .take()
            .with_context(|| format!("the {name} process has no stdout"))?;
        let mut lines = BufReader::new(stdout).lines();
        let ready = tokio::time::timeout(START_TIMEOUT, async {
            while let Some(line) = lines.next_line().await? {
                if line.contains(ready_line) {
                    return anyhow::Ok(());
                }
            }
            anyhow::bail!("{name} exited before saying {ready_line:?}")
        })
        .await;
        match ready {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e.context(format!("see {}", log.display()))),
            Err(_) => anyhow::bail!(
                "{name} did not say {ready_line:?} within {START_TIMEOUT:?}; see {}",
                log.display()
            ),
        }
        let ready_at = Instant::now();
        // The rest of its stdout is read so the pipe never fills.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Self {
            name: name.to_owned(),
            child,
            pid,
            started_at,
            ready_at,
            log,
        })
    }

    /// When the process was spawned.
    pub fn started_at(&self) -> Instant {
        self.started_at
    }

    /// When it printed its ready line.
    pub fn ready_at(&self) -> Instant {
        self.ready_at
    }

    /// The file its stderr (its log) goes to.
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// Its log so far.
    pub fn log_text(&self) -> anyhow::Result<String> {
        std::fs::read_to_string(&self.log)
            .with_context(|| format!("reading {}", self.log.display()))
    }

    /// Its peak resident set so far, in bytes (`VmHWM`).
    pub fn peak_rss(&self) -> Option<u64> {
        memory::peak_rss_of(self.pid)
    }

    /// Asks the process to commit and stop (SIGTERM), and kills it if it has not within
    /// [`STOP_TIMEOUT`].
    pub async fn stop(mut self) {
        let signalled = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid.to_string())
            .status()
            .await
            .is_ok_and(|s| s.success());
        if signalled
            && tokio::time::timeout(STOP_TIMEOUT, self.child.wait())
                .await
                .is_ok()
        {
            return;
        }
        eprintln!("{} did not stop on SIGTERM; killing it", self.name);
        if let Err(e) = self.child.kill().await {
            eprintln!("could not kill {} (pid {}): {e}", self.name, self.pid);
        }
    }
}
