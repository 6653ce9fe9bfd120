//! The test run's broker: an existing one named by `LHS_KAFKA_BOOTSTRAP_SERVERS`, or the
//! project's local broker (nisshi, `memory://` storage) started once per test process on
//! a free loopback port.
//!
//! The local broker runs under a tiny `sh` supervisor that holds a pipe from this
//! process. When this process exits, however it exits (tests passing, panicking, or the
//! process being killed), the kernel closes the pipe and the supervisor kills the
//! broker, so no broker outlives its test run.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::OnceCell;
use weir_topology::kafka::{KafkaAdmin, KafkaConfig};

/// The broker release the project builds and tests against.
pub const BROKER_VERSION: &str = "0.7.0-pre.2";

/// How long the local broker may take to answer its first metadata request.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs the broker given as arguments and kills it once stdin reaches end-of-file.
const SUPERVISOR_SCRIPT: &str =
    r#""$@" </dev/null & child=$!; read -r _; kill "$child" 2>/dev/null; wait "$child""#;

/// A broker this process started; it stops when this value is dropped (or, for the
/// shared one, when the process exits).
#[derive(Debug)]
pub struct LocalBroker {
    /// The address clients bootstrap from (the advertised one).
    pub bootstrap: String,
    /// Keeps the supervisor (and so the broker) alive while this value lives.
    _supervisor: Mutex<Child>,
}

static BROKER: OnceCell<Result<String, String>> = OnceCell::const_new();
static LOCAL: OnceCell<LocalBroker> = OnceCell::const_new();

/// The bootstrap address of the broker for this test run, starting the local broker on
/// first use. Panics with instructions when no broker can be had.
pub async fn bootstrap() -> String {
    let result = BROKER
        .get_or_init(|| async {
            match std::env::var("LHS_KAFKA_BOOTSTRAP_SERVERS") {
                Ok(external) if !external.trim().is_empty() => Ok(external),
                _ => start_local().await.map(|b| b.bootstrap.clone()),
            }
        })
        .await;
    match result {
        Ok(bootstrap) => bootstrap.clone(),
        Err(message) => panic!("no broker for the integration tests: {message}"),
    }
}

/// Where `make broker-install` puts the broker: `$WEIR_CACHE_DIR/broker/bin/nisshi`,
/// with `WEIR_CACHE_DIR` defaulting to `$HOME/.cache/weir`. `WEIR_BROKER_BIN` overrides.
pub fn broker_binary() -> Result<PathBuf, String> {
    if let Ok(path) = std::env::var("WEIR_BROKER_BIN") {
        return Ok(PathBuf::from(path));
    }
    let cache = match std::env::var("WEIR_CACHE_DIR") {
        Ok(dir) => PathBuf::from(dir),
        Err(_) => {
            let home =
                std::env::var("HOME").map_err(|_| "neither WEIR_CACHE_DIR nor HOME is set")?;
            PathBuf::from(home).join(".cache").join("weir")
        }
    };
    Ok(cache.join("broker").join("bin").join("nisshi"))
}

async fn start_local() -> Result<&'static LocalBroker, String> {
    LOCAL
        .get_or_try_init(|| async {
            let port = free_port()?;
            launch(port, format!("127.0.0.1:{port}")).await
        })
        .await
}

/// Starts a broker of its own for one test, listening on `port` and advertising
/// `advertised` (for example a proxy's address, so every client goes through it).
/// Panics when no local broker binary is installed.
pub async fn start_dedicated_on(port: u16, advertised: String) -> LocalBroker {
    launch(port, advertised)
        .await
        .unwrap_or_else(|e| panic!("starting a dedicated broker: {e}"))
}

/// A free loopback port.
pub fn free_port() -> Result<u16, String> {
    let listener =
        std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| format!("no free port: {e}"))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

async fn launch(port: u16, advertised: String) -> Result<LocalBroker, String> {
    let binary = broker_binary()?;
    check_version(&binary)?;
    let listen = format!("127.0.0.1:{port}");
    let listen_url = format!("tcp://{listen}");
    let advertised_url = format!("tcp://{advertised}");
    let log_path = std::env::temp_dir().join(format!(
        "weir-test-broker-{}-{port}.log",
        std::process::id()
    ));
    let log = std::fs::File::create(&log_path)
        .map_err(|e| format!("cannot create broker log {}: {e}", log_path.display()))?;
    let log_err = log
        .try_clone()
        .map_err(|e| format!("cannot share broker log {}: {e}", log_path.display()))?;
    let mut supervisor = Command::new("sh")
        .arg("-c")
        .arg(SUPERVISOR_SCRIPT)
        .arg("weir-test-broker")
        .arg(&binary)
        .args([
            "broker",
            "--listener-url",
            &listen_url,
            "--advertised-listener-url",
            &advertised_url,
        ])
        .args([
            "--storage-engine",
            "memory://weir/",
            "--cluster-id",
            "weir-test",
        ])
        .stdin(Stdio::piped())
        .stdout(log)
        .stderr(log_err)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;

    let deadline = Instant::now() + STARTUP_TIMEOUT;
    // Ask the listener itself: the advertised address may be a proxy not yet open.
    let config = KafkaConfig::new(&listen).with_connect_timeout(Duration::from_secs(2));
    loop {
        if let Ok(Some(status)) = supervisor.try_wait() {
            return Err(format!(
                "the broker exited ({status}) before answering; its log {}:\n{}",
                log_path.display(),
                std::fs::read_to_string(&log_path).unwrap_or_default()
            ));
        }
        if let Ok(admin) = KafkaAdmin::connect(&config).await
            && admin.list_topics().await.is_ok()
        {
            return Ok(LocalBroker {
                bootstrap: advertised,
                _supervisor: Mutex::new(supervisor),
            });
        }
        if Instant::now() >= deadline {
            let _ = supervisor.kill();
            return Err(format!(
                "the broker did not answer a metadata request on {listen} within {STARTUP_TIMEOUT:?}; log: {}",
                log_path.display()
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn check_version(binary: &PathBuf) -> Result<(), String> {
    let output = Command::new(binary).arg("--version").output().map_err(|e| {
        format!(
            "the local broker {} cannot be run ({e}); run `make broker-install` (make test does it), \
             or set LHS_KAFKA_BOOTSTRAP_SERVERS to use another broker",
            binary.display()
        )
    })?;
    let version = String::from_utf8_lossy(&output.stdout);
    if !version.contains(BROKER_VERSION) {
        return Err(format!(
            "{} reports version {:?}, but the tests need {BROKER_VERSION}; run `make broker-install`",
            binary.display(),
            version.trim()
        ));
    }
    Ok(())
}
