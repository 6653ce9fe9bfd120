//! `weir` child processes: start one with a test's environment, watch its output, stop it
//! cleanly with SIGTERM or abruptly with SIGKILL, and never leave one running after the
//! test (a dropped handle kills its process).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// A running (or exited) `weir` process and its captured output.
#[derive(Debug)]
pub struct WeirProcess {
    name: String,
    child: Child,
    stdout_path: PathBuf,
    stderr_path: PathBuf,
}

/// Processes started by this test run so far.
static STARTED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl WeirProcess {
    /// Starts `weir ARGS…` with `env` added to this process's environment. Its stdout
    /// and stderr go to files named after `name` in the system temp directory.
    pub fn start(name: &str, args: &[&str], env: &[(String, String)]) -> Self {
        Self::start_binary(&workspace_binary("weir-processor", "weir"), name, args, env)
    }

    /// Starts one of the `weir-examples` binaries the same way.
    pub fn start_example(
        binary: &str,
        name: &str,
        args: &[&str],
        env: &[(String, String)],
    ) -> Self {
        Self::start_binary(&workspace_binary("weir-examples", binary), name, args, env)
    }

    fn start_binary(binary: &Path, name: &str, args: &[&str], env: &[(String, String)]) -> Self {
        let dir = std::env::temp_dir().join(format!("weir-it-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        // Tests run in parallel and may reuse a name (every runtime test runs a `dump`):
        // a sequence number keeps each process's files its own.
        let sequence = STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let stdout_path = dir.join(format!("{name}-{sequence}.stdout"));
        let stderr_path = dir.join(format!("{name}-{sequence}.stderr"));
        let stdout = std::fs::File::create(&stdout_path)
            .unwrap_or_else(|e| panic!("creating {}: {e}", stdout_path.display()));
        let stderr = std::fs::File::create(&stderr_path)
            .unwrap_or_else(|e| panic!("creating {}: {e}", stderr_path.display()));
        let child = Command::new(binary)
            .args(args)
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {} {args:?}: {e}", binary.display()));
        Self {
            name: name.to_owned(),
            child,
            stdout_path,
            stderr_path,
        }
    }

    /// Runs `weir ARGS…` to its end and returns its stdout; panics, showing its output,
    /// unless it exits successfully within `timeout` with nothing on stderr.
    pub async fn run_ok(
        name: &str,
        args: &[&str],
        env: &[(String, String)],
        timeout: Duration,
    ) -> String {
        let mut weir = Self::start(name, args, env);
        let status = weir.wait_for_exit(timeout).await;
        assert!(
            status.success(),
            "{}",
            weir.report(&format!("(weir {args:?}) failed: {status}"))
        );
        assert_eq!(weir.stderr(), "", "weir {args:?} wrote to stderr");
        weir.stdout()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the process has written to stdout so far.
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(&self.stdout_path).unwrap_or_default()
    }

    /// Everything the process has written to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// Asks the process to shut down cleanly (SIGTERM).
    pub fn sigterm(&self) {
        self.signal(Signal::SIGTERM);
    }

    /// Kills the process at once (SIGKILL), as a crash would, and reaps it.
    pub fn sigkill(&mut self) {
        self.signal(Signal::SIGKILL);
        let _ = self.child.wait();
    }

    /// Waits until stdout holds something `accept` likes; panics at `timeout` showing
    /// the process's stdout and stderr.
    pub async fn wait_for_stdout(
        &mut self,
        timeout: Duration,
        what: &str,
        accept: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let stdout = self.stdout();
            if accept(&stdout) {
                return stdout;
            }
            if Instant::now() >= deadline {
                panic!("{}", self.report(&format!("waited {timeout:?} for {what}")));
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "{}",
                    self.report(&format!("exited ({status}) while waiting for {what}"))
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits for the process to exit and returns its status; panics at `timeout`.
    pub async fn wait_for_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return status,
                Ok(None) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                Ok(None) => panic!(
                    "{}",
                    self.report(&format!("did not exit within {timeout:?}"))
                ),
                Err(e) => panic!("{}", self.report(&format!("cannot be waited for: {e}"))),
            }
        }
    }

    fn signal(&self, signal: Signal) {
        let Ok(pid) = i32::try_from(self.child.id()) else {
            return;
        };
        // An already-exited process is fine: there is nothing left to signal.
        let _ = kill(Pid::from_raw(pid), signal);
    }

    fn report(&self, problem: &str) -> String {
        format!(
            "weir process {} (pid {}) {problem}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.name,
            self.pid(),
            self.stdout(),
            self.stderr()
        )
    }
}

impl Drop for WeirProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            // The failing test's output is all CI shows: say where this process's log
            // is and what it warned about.
            eprintln!(
                "--- {} ({}): {}",
                self.name,
                self.stderr_path.display(),
                warnings_of(&self.stderr())
            );
        }
    }
}

/// Most WARN/ERROR lines a failing test prints per process.
const WARNINGS_SHOWN: usize = 40;

/// The WARN and ERROR lines of a log (the last [`WARNINGS_SHOWN`]), or a word that
/// there are none.
fn warnings_of(log: &str) -> String {
    let warnings: Vec<&str> = log
        .lines()
        .filter(|line| line.contains(" WARN ") || line.contains(" ERROR "))
        .collect();
    if warnings.is_empty() {
        return "no WARN or ERROR lines".to_owned();
    }
    let shown = &warnings[warnings.len().saturating_sub(WARNINGS_SHOWN)..];
    format!(
        "{} WARN/ERROR lines, the last {}:\n{}",
        warnings.len(),
        shown.len(),
        shown.join("\n")
    )
}

/// A binary of this workspace, after one `cargo build --workspace --all-targets` per test
/// run so tests never run a stale one (the same selection `make test` builds, so it
/// reuses that build instead of compiling dependencies with other features).
/// `WEIR_BIN` overrides the `weir` binary.
pub fn workspace_binary(package: &str, binary: &str) -> PathBuf {
    static BUILT: Mutex<BTreeMap<String, PathBuf>> = Mutex::new(BTreeMap::new());
    if binary == "weir"
        && let Ok(path) = std::env::var("WEIR_BIN")
    {
        return PathBuf::from(path);
    }
    let mut built = BUILT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(path) = built.get(binary) {
        return path.clone();
    }
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("locating the test binary: {e}"));
    // target/<profile>/deps/<test binary> -> target/<profile>/<binary>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .unwrap_or_else(|| panic!("unexpected test binary location {}", exe.display()));
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut command = Command::new(cargo);
    command.args(["build", "--quiet", "--workspace", "--all-targets"]);
    if profile_dir.file_name().is_some_and(|p| p == "release") {
        command.arg("--release");
    }
    let status = command
        .status()
        .unwrap_or_else(|e| panic!("running cargo build for {binary}: {e}"));
    assert!(
        status.success(),
        "cargo build --workspace --all-targets failed ({status})"
    );
    let path = profile_dir.join(binary);
    assert!(path.exists(), "{package} has no binary {}", path.display());
    built.insert(binary.to_owned(), path.clone());
    path
}

/// Runs one of the project's scripts, `scripts/{script}`, as the Makefile does, with
/// `env` (the test namespace's, plus the script's own settings) on top of: the
/// workspace `binaries` (package, binary) built first and found through
/// `CARGO_TARGET_DIR`, `WEIR_CACHE_DIR` set to `cache`, and `LHS_STATE_DIR` and
/// `LHS_ADVERTISED_HTTP` left to the script. Fails the test unless it exits 0 within
/// `timeout`; returns its standard output.
pub async fn run_script(
    script: &str,
    binaries: &[(&str, &str)],
    env: &[(String, String)],
    cache: &Path,
    timeout: Duration,
) -> String {
    let built: Vec<PathBuf> = binaries
        .iter()
        .map(|(package, binary)| workspace_binary(package, binary))
        .collect();
    // The scripts run `$CARGO_TARGET_DIR/debug/{binary}`.
    let target_dir = built
        .first()
        .and_then(|binary| binary.parent())
        .and_then(Path::parent)
        .unwrap_or_else(|| panic!("no target directory above {built:?}"));
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let script = root.join("scripts").join(script);
    let mut command = tokio::process::Command::new(&script);
    command
        .current_dir(&root)
        .envs(env.iter().cloned())
        .env("CARGO_TARGET_DIR", target_dir)
        .env("WEIR_CACHE_DIR", cache)
        .env_remove("LHS_ADVERTISED_HTTP")
        .env_remove("LHS_STATE_DIR")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let output = tokio::time::timeout(timeout, command.output())
        .await
        .unwrap_or_else(|_| panic!("{} did not finish within {timeout:?}", script.display()))
        .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{} exited {}:\n{stdout}\n{}",
        script.display(),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}
