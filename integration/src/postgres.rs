//! The test run's PostgreSQL, and a database per test. The server is the one named by
//! `WEIR_TEST_POSTGRES_URL`, or the project's own (`scripts/postgres.sh start`, which
//! initialises it under `WEIR_CACHE_DIR` and reuses one already running; it keeps
//! running after the tests, like a cache). Each test creates its own database, named
//! after its namespace, so tests run in parallel without seeing each other's tables.

use std::path::Path;
use std::time::Duration;

use tokio::sync::OnceCell;
use tokio_postgres::{Client, NoTls};

use crate::TestNamespace;

/// How long `scripts/postgres.sh start` may take (initialising a cluster included).
const START_TIMEOUT: Duration = Duration::from_secs(120);

static SERVER: OnceCell<Result<String, String>> = OnceCell::const_new();

/// The URL of the test run's server (its `weir` database), starting it on first use.
/// Panics with instructions when there is none.
pub async fn server_url() -> String {
    let result = SERVER
        .get_or_init(|| async {
            match std::env::var("WEIR_TEST_POSTGRES_URL") {
                Ok(url) if !url.trim().is_empty() => Ok(url),
                _ => start_local().await,
            }
        })
        .await;
    match result {
        Ok(url) => url.clone(),
        Err(message) => panic!("no PostgreSQL for the integration tests: {message}"),
    }
}

async fn start_local() -> Result<String, String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/postgres.sh");
    let run = tokio::process::Command::new("bash")
        .arg(&script)
        .arg("start")
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(START_TIMEOUT, run)
        .await
        .map_err(|_| format!("{} start took over {START_TIMEOUT:?}", script.display()))?
        .map_err(|e| format!("running {}: {e}", script.display()))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(format!(
            "{} start failed ({}); install PostgreSQL with scripts/install-system-deps.sh \
             (make test does)\n{stdout}{}",
            script.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    stdout
        .lines()
        .last()
        .filter(|line| line.starts_with("postgres"))
        .map(str::to_owned)
        .ok_or_else(|| format!("{} start printed no URL: {stdout}", script.display()))
}

/// Connects to `url`; the connection runs on its own task.
pub async fn connect(url: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .unwrap_or_else(|e| panic!("connecting to {url}: {e}"));
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// `url` with its database replaced by `database` (a URL's path; a query is kept).
pub fn with_database(url: &str, database: &str) -> String {
    let (scheme, rest) = url
        .split_once("://")
        .unwrap_or_else(|| panic!("{url} is not a postgresql:// URL"));
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let query = path
        .split_once('?')
        .map(|(_, q)| format!("?{q}"))
        .unwrap_or_default();
    format!("{scheme}://{authority}/{database}{query}")
}

/// One test's database, created empty.
#[derive(Debug)]
pub struct TestDatabase {
    /// The database's name: the namespace's cluster id, as a plain identifier.
    pub name: String,
    /// Its URL, for the processes the test starts.
    pub url: String,
    server: String,
}

impl TestDatabase {
    /// Creates the namespace's database on the test run's server.
    pub async fn create(ns: &TestNamespace) -> Self {
        let server = server_url().await;
        let name: String = ns
            .cluster_id
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .take(63)
            .collect();
        connect(&server)
            .await
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .await
            .unwrap_or_else(|e| panic!("creating database {name}: {e}"));
        Self {
            url: with_database(&server, &name),
            name,
            server,
        }
    }

    /// A connection to the database.
    pub async fn connect(&self) -> Client {
        connect(&self.url).await
    }

    /// How many sessions other than the caller's are connected to the database.
    pub async fn other_sessions(&self, client: &Client) -> i64 {
        client
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
                &[&self.name],
            )
            .await
            .unwrap_or_else(|e| panic!("counting sessions on {}: {e}", self.name))
            .get(0)
    }

    /// Drops the database, closing any session still on it.
    pub async fn drop_database(self) {
        connect(&self.server)
            .await
            .batch_execute(&format!("DROP DATABASE \"{}\" WITH (FORCE)", self.name))
            .await
            .unwrap_or_else(|e| panic!("dropping database {}: {e}", self.name));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_of_a_url_is_replaced() {
        assert_eq!(
            with_database("postgresql://weir@127.0.0.1:5433/weir", "t_1"),
            "postgresql://weir@127.0.0.1:5433/t_1"
        );
        assert_eq!(
            with_database("postgres://u:p@h:1", "t"),
            "postgres://u:p@h:1/t"
        );
        assert_eq!(
            with_database("postgres://h/db?sslmode=disable", "t"),
            "postgres://h/t?sslmode=disable"
        );
    }
}
