//! Running the real `keyturn-operator` binary: `run` processes with the CLI contract the e2e
//! suite relies on (every flag overridable), their logs, signals, /metrics and /readyz, the
//! crash hook, and one-shot commands (`crd`, `explain`) through `spawn_raw`.

use std::ffi::OsStr;
use std::fs::File;
use std::net::{SocketAddr, TcpListener};
use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::cluster::{Cluster, TestNamespace};
use crate::names::{profile_dir, workspace_root};
use crate::wait::{DEFAULT_TIMEOUT, wait_for};

/// Environment variable with the path of the operator binary to test (overrides the one next to
/// the test binary).
pub const OPERATOR_BIN: &str = "KEYTURN_OPERATOR_BIN";

/// Environment variable the operator reads to abort itself once at a lifecycle step boundary:
/// `before:<Step>` or `after:<Step>` (Stage, Apply, Verify, Publish, RestartConsumers,
/// AwaitRollout, RetirePrevious).
pub const CRASH_POINT_ENV: &str = "KEYTURN_TEST_CRASH_POINT";

/// How long a one-shot command (`crd`, `explain`) may run.
const RAW_COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// Log lines shown when a test fails while an operator runs.
const LOG_TAIL_LINES: usize = 40;

/// The operator binary: `$KEYTURN_OPERATOR_BIN`, else `keyturn-operator` in the cargo profile
/// directory the test was built into (`<target>/debug/`).
///
/// # Panics
/// When the binary does not exist, saying how to build it.
pub fn operator_binary() -> PathBuf {
    let path = match std::env::var_os(OPERATOR_BIN) {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => profile_dir()
            .expect("cannot tell the cargo target directory from the test's executable path; set KEYTURN_OPERATOR_BIN")
            .join("keyturn-operator"),
    };
    assert!(
        path.is_file(),
        "the operator binary {} does not exist: run `cargo build -p keyturn-operator` first \
         (scripts/test.sh does), or set {OPERATOR_BIN} to its path",
        path.display()
    );
    path
}

/// What a one-shot run of the operator binary printed.
#[derive(Debug, Clone)]
pub struct RawOutput {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl RawOutput {
    /// Whether it exited with status 0.
    pub fn success(&self) -> bool {
        self.status.success()
    }
}

/// Runs the operator binary with `args` in the workspace root (so `examples/...` paths work),
/// waits for it (60 s at most) and returns its exit status and output.
///
/// # Panics
/// When it cannot be started or does not finish in time.
pub async fn spawn_raw<I, S>(args: I) -> RawOutput
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let binary = operator_binary();
    let mut command = tokio::process::Command::new(&binary);
    command
        .args(args)
        .current_dir(workspace_root())
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let output = tokio::time::timeout(RAW_COMMAND_TIMEOUT, command.output())
        .await
        .unwrap_or_else(|_| {
            panic!(
                "{} did not finish within {RAW_COMMAND_TIMEOUT:?}",
                binary.display()
            )
        })
        .unwrap_or_else(|error| panic!("run {}: {error}", binary.display()));
    RawOutput {
        status: output.status,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Describes an exit status for people: `exit code 1`, `signal 6 (SIGABRT)`.
pub(crate) fn describe_exit(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(signal)) => {
            let name = match signal {
                6 => " (SIGABRT)",
                9 => " (SIGKILL)",
                15 => " (SIGTERM)",
                _ => "",
            };
            format!("signal {signal}{name}")
        }
        (None, None) => format!("{status}"),
    }
}

// ---------------------------------------------------------------------------------------------
// The registry of running operators, for the log tails in timeout messages.

struct Shared {
    label: String,
    log_path: PathBuf,
    child: Mutex<Child>,
}

impl Shared {
    fn child(&self) -> MutexGuard<'_, Child> {
        self.child.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn try_status(&self) -> Option<ExitStatus> {
        self.child().try_wait().ok().flatten()
    }

    fn tail(&self, lines: usize) -> String {
        let state = match self.try_status() {
            Some(status) => format!("exited: {}", describe_exit(status)),
            None => "running".to_owned(),
        };
        let text = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        let shown = &all[all.len().saturating_sub(lines)..];
        format!(
            "----- last {} of {} log lines of {} ({state}, {}) -----\n{}\n----- end of {} -----\n",
            shown.len(),
            all.len(),
            self.label,
            self.log_path.display(),
            shown.join("\n"),
            self.label
        )
    }
}

static REGISTRY: Mutex<Vec<Weak<Shared>>> = Mutex::new(Vec::new());

fn registry() -> MutexGuard<'static, Vec<Weak<Shared>>> {
    REGISTRY.lock().unwrap_or_else(PoisonError::into_inner)
}

fn register(shared: &Arc<Shared>) {
    let mut registry = registry();
    registry.retain(|entry| entry.strong_count() > 0);
    registry.push(Arc::downgrade(shared));
}

/// The tails of the logs of every operator process not yet dropped (in this test process:
/// nextest runs each test in a process of its own).
pub(crate) fn registered_log_tails(lines: usize) -> String {
    let alive: Vec<Arc<Shared>> = registry().iter().filter_map(Weak::upgrade).collect();
    if alive.is_empty() {
        return "(no operator process is running)\n".to_owned();
    }
    alive.iter().map(|shared| shared.tail(lines)).collect()
}

// ---------------------------------------------------------------------------------------------
// Operator processes

static SPAWNED: AtomicU64 = AtomicU64::new(0);

/// How to start one `keyturn-operator run` process; see [`OperatorProcess::builder`].
#[derive(Debug, Clone)]
pub struct OperatorBuilder {
    binary: Option<PathBuf>,
    kubeconfig_path: PathBuf,
    namespace: String,
    work_dir: PathBuf,
    identity: Option<String>,
    subcommand: String,
    /// Replacements (`Some`) and removals (`None`) of default flags, and flags to add.
    flag_overrides: Vec<(String, Option<String>)>,
    extra_args: Vec<String>,
    env: Vec<(String, String)>,
    crash_point: Option<String>,
}

impl OperatorBuilder {
    /// The lease holder identity (`--identity`); default `operator-<n>`, unique in the test.
    pub fn identity(mut self, identity: &str) -> OperatorBuilder {
        self.identity = Some(identity.to_owned());
        self
    }

    /// Sets an environment variable of the process (it inherits the test's environment, which
    /// carries the backends' `KEYTURN_TEST_*` and AWS variables).
    pub fn env(mut self, key: &str, value: &str) -> OperatorBuilder {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Appends an argument after the default flags.
    pub fn arg(mut self, arg: &str) -> OperatorBuilder {
        self.extra_args.push(arg.to_owned());
        self
    }

    /// Sets a flag's value: replaces a default flag (`--lease-duration`, `--http-addr`, ...) in
    /// place, or adds the flag.
    pub fn flag(mut self, flag: &str, value: &str) -> OperatorBuilder {
        self.flag_overrides
            .push((flag.to_owned(), Some(value.to_owned())));
        self
    }

    /// Leaves a default flag out.
    pub fn without_flag(mut self, flag: &str) -> OperatorBuilder {
        self.flag_overrides.push((flag.to_owned(), None));
        self
    }

    /// The subcommand (default `run`).
    pub fn subcommand(mut self, subcommand: &str) -> OperatorBuilder {
        self.subcommand = subcommand.to_owned();
        self
    }

    /// The audit store (`--audit-store`). Default: `sqlite:<namespace work dir>/audit.db`,
    /// shared by every operator of the namespace, so a restarted operator continues the chain.
    pub fn audit_store(self, url: &str) -> OperatorBuilder {
        self.flag("--audit-store", url)
    }

    /// Makes the operator abort itself once at a step boundary: `before:<Step>` or
    /// `after:<Step>` (Stage Apply Verify Publish RestartConsumers AwaitRollout RetirePrevious).
    pub fn crash_at(mut self, point: &str) -> OperatorBuilder {
        self.crash_point = Some(point.to_owned());
        self
    }

    /// No crash point (the default; for a builder taken from a crashed process).
    pub fn no_crash(mut self) -> OperatorBuilder {
        self.crash_point = None;
        self
    }

    /// Another binary than [`operator_binary`] (a wrapper script, say).
    pub fn binary(mut self, path: impl Into<PathBuf>) -> OperatorBuilder {
        self.binary = Some(path.into());
        self
    }

    /// The flags and arguments the process gets, given its identity and HTTP address.
    fn command_line(&self, identity: &str, http_address: SocketAddr) -> Vec<String> {
        let audit_store = format!("sqlite:{}", self.work_dir.join("audit.db").display());
        let mut flags: Vec<(String, String)> = [
            ("--watch-namespace", self.namespace.clone()),
            ("--http-addr", http_address.to_string()),
            ("--audit-store", audit_store),
            ("--lease-namespace", self.namespace.clone()),
            ("--lease-duration", "3s".to_owned()),
            ("--lease-renew-interval", "1s".to_owned()),
            ("--identity", identity.to_owned()),
            ("--log-format", "json".to_owned()),
            ("--shutdown-grace", "10s".to_owned()),
        ]
        .into_iter()
        .map(|(flag, value)| (flag.to_owned(), value))
        .collect();
        for (flag, value) in &self.flag_overrides {
            let position = flags.iter().position(|(existing, _)| existing == flag);
            match (position, value) {
                (Some(index), Some(value)) => flags[index].1.clone_from(value),
                (Some(index), None) => {
                    flags.remove(index);
                }
                (None, Some(value)) => flags.push((flag.clone(), value.clone())),
                (None, None) => {}
            }
        }
        let mut line = vec![self.subcommand.clone()];
        for (flag, value) in flags {
            line.push(flag);
            line.push(value);
        }
        line.extend(self.extra_args.iter().cloned());
        line
    }

    /// Starts the process, its stdout and stderr going to `<namespace work dir>/<identity>-<n>.log`.
    ///
    /// # Panics
    /// When the binary is missing or cannot be started.
    pub fn spawn(self) -> OperatorProcess {
        let sequence = SPAWNED.fetch_add(1, Ordering::Relaxed);
        let identity = self
            .identity
            .clone()
            .unwrap_or_else(|| format!("operator-{sequence}"));
        let binary = self.binary.clone().unwrap_or_else(operator_binary);
        let http_address = free_loopback_address();
        let args = self.command_line(&identity, http_address);
        // The address the process was told to serve on, if a test overrode it.
        let http_address = args
            .windows(2)
            .find(|pair| pair[0] == "--http-addr")
            .and_then(|pair| pair[1].parse().ok());

        let log_path = self.work_dir.join(format!("{identity}-{sequence}.log"));
        let log = File::create(&log_path)
            .unwrap_or_else(|error| panic!("create {}: {error}", log_path.display()));
        let log_for_stderr = log
            .try_clone()
            .unwrap_or_else(|error| panic!("duplicate {}: {error}", log_path.display()));

        let mut command = Command::new(&binary);
        command
            .args(&args)
            .env("KUBECONFIG", &self.kubeconfig_path)
            .stdin(Stdio::null())
            // One open file for both streams: lines land in the order they were written.
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_for_stderr));
        // Deliberately not a process group of its own: nextest kills a timed-out test's process
        // group, which then takes the operator along.
        match &self.crash_point {
            Some(point) => command.env(CRASH_POINT_ENV, point),
            None => command.env_remove(CRASH_POINT_ENV),
        };
        for (key, value) in &self.env {
            command.env(key, value);
        }
        let child = command
            .spawn()
            .unwrap_or_else(|error| panic!("start {}: {error}", binary.display()));
        let label = format!("operator {identity} (pid {})", child.id());
        let shared = Arc::new(Shared {
            label,
            log_path,
            child: Mutex::new(child),
        });
        register(&shared);
        OperatorProcess {
            shared,
            identity,
            http_address,
            args,
            builder: self,
            http: crate::http::client(),
        }
    }
}

/// A port on 127.0.0.1 that was free a moment ago. Another process may take it before the
/// operator binds it; the operator then fails to start, which `wait_ready` reports.
fn free_loopback_address() -> SocketAddr {
    let listener =
        TcpListener::bind(("127.0.0.1", 0)).expect("bind 127.0.0.1:0 to find a free port");
    listener
        .local_addr()
        .expect("the local address of a bound listener")
}

/// A running `keyturn-operator` process; killed (SIGKILL) when dropped.
pub struct OperatorProcess {
    shared: Arc<Shared>,
    identity: String,
    http_address: Option<SocketAddr>,
    args: Vec<String>,
    builder: OperatorBuilder,
    http: reqwest::Client,
}

impl std::fmt::Debug for OperatorProcess {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("OperatorProcess")
            .field("label", &self.shared.label)
            .field("http_address", &self.http_address)
            .field("log_path", &self.shared.log_path)
            .finish_non_exhaustive()
    }
}

impl OperatorProcess {
    /// A builder for an operator watching `namespace` of `cluster`, with the e2e defaults:
    ///
    /// `run --watch-namespace <ns> --http-addr 127.0.0.1:<free port> --audit-store
    /// sqlite:<work dir>/audit.db --lease-namespace <ns> --lease-duration 3s
    /// --lease-renew-interval 1s --identity <id> --log-format json --shutdown-grace 10s`
    /// with `KUBECONFIG` set to the cluster's kubeconfig.
    pub fn builder(cluster: &Cluster, namespace: &TestNamespace) -> OperatorBuilder {
        OperatorBuilder {
            binary: None,
            kubeconfig_path: cluster.kubeconfig_path().to_path_buf(),
            namespace: namespace.name().to_owned(),
            work_dir: namespace.work_dir().to_path_buf(),
            identity: None,
            subcommand: "run".to_owned(),
            flag_overrides: Vec::new(),
            extra_args: Vec::new(),
            env: Vec::new(),
            crash_point: None,
        }
    }

    /// The builder this process was started from, without its crash point: to start it again
    /// (same identity, audit store and flags; a new free port unless `--http-addr` was set).
    pub fn respawn_builder(&self) -> OperatorBuilder {
        self.builder.clone().identity(&self.identity).no_crash()
    }

    /// The lease holder identity.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.shared.child().id()
    }

    /// The arguments the binary got.
    pub fn args(&self) -> &[String] {
        &self.args
    }

    /// Where `--http-addr` points.
    ///
    /// # Panics
    /// When `--http-addr` was removed or overridden with something that is not an address.
    pub fn http_address(&self) -> SocketAddr {
        self.http_address
            .unwrap_or_else(|| panic!("{}: --http-addr is not a socket address", self.shared.label))
    }

    /// The log file (stdout and stderr).
    pub fn log_path(&self) -> &Path {
        &self.shared.log_path
    }

    /// Everything the process wrote to stdout and stderr so far.
    pub fn logs(&self) -> String {
        let bytes = std::fs::read(&self.shared.log_path).unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// The log lines that are JSON objects (`--log-format json`), parsed.
    pub fn log_records(&self) -> Vec<Value> {
        self.logs()
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter(Value::is_object)
            .collect()
    }

    /// The last `lines` lines of the log, framed, for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        self.shared.tail(lines)
    }

    /// The exit status, if the process has exited.
    pub fn exit_status(&self) -> Option<ExitStatus> {
        self.shared.try_status()
    }

    /// SIGKILL (no chance to clean up), then reaps the process; returns its exit status.
    pub fn kill(&self) -> ExitStatus {
        let mut child = self.shared.child();
        if let Ok(Some(status)) = child.try_wait() {
            return status;
        }
        // An error here means it exited meanwhile; wait() below returns that status.
        let _ = child.kill();
        child
            .wait()
            .unwrap_or_else(|error| panic!("{}: wait after SIGKILL: {error}", self.shared.label))
    }

    /// SIGTERM (graceful shutdown); does not wait. Does nothing when the process has exited.
    pub fn terminate(&self) {
        let child = &mut *self.shared.child();
        // Only while not reaped: after that the pid may belong to someone else.
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap_or_else(|error| panic!("run kill -TERM: {error}"));
        assert!(
            status.success() || matches!(child.try_wait(), Ok(Some(_))),
            "kill -TERM {} failed: {status}",
            child.id()
        );
    }

    /// Waits up to `timeout` for the process to exit; its status, or `None` if it still runs.
    pub async fn wait_exit(&self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exit_status() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// GET `path` on the operator's HTTP address: status and body, or why there was no answer.
    pub async fn http_get(&self, path: &str) -> Result<(u16, String), String> {
        let url = format!("http://{}{path}", self.http_address());
        let response = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|error| format!("GET {url}: {error}"))?;
        let status = response.status().as_u16();
        let body = response
            .text()
            .await
            .map_err(|error| format!("GET {url}: reading the body: {error}"))?;
        Ok((status, body))
    }

    /// The Prometheus text of `/metrics`.
    ///
    /// # Panics
    /// When there is no 200 answer, with the log tail.
    pub async fn metrics(&self) -> String {
        match self.http_get("/metrics").await {
            Ok((200, body)) => body,
            Ok((status, body)) => panic!(
                "{}: /metrics answered {status}: {body}\n{}",
                self.shared.label,
                self.log_tail(LOG_TAIL_LINES)
            ),
            Err(error) => panic!(
                "{}: {error}\n{}",
                self.shared.label,
                self.log_tail(LOG_TAIL_LINES)
            ),
        }
    }

    /// Waits (up to [`DEFAULT_TIMEOUT`]) until `/readyz` answers 200.
    ///
    /// # Panics
    /// When the process exits first or the time runs out, with its log.
    pub async fn wait_ready(&self) {
        let description = format!("{} to answer 200 on /readyz", self.shared.label);
        wait_for(&description, DEFAULT_TIMEOUT, async || {
            if let Some(status) = self.exit_status() {
                panic!(
                    "{} exited ({}) before it was ready\n{}",
                    self.shared.label,
                    describe_exit(status),
                    self.log_tail(LOG_TAIL_LINES)
                );
            }
            match self.http_get("/readyz").await {
                Ok((200, _)) => Ok(()),
                other => Err(other),
            }
        })
        .await;
    }

    /// Waits until a log line contains `needle`, and returns that line.
    pub async fn wait_for_log(&self, needle: &str, timeout: Duration) -> String {
        let description = format!("{} to log a line containing {needle:?}", self.shared.label);
        wait_for(&description, timeout, async || {
            self.logs()
                .lines()
                .find(|line| line.contains(needle))
                .map(str::to_owned)
        })
        .await
    }
}

impl Drop for OperatorProcess {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.log_tail(LOG_TAIL_LINES));
        }
        let mut child = self.shared.child();
        if !matches!(child.try_wait(), Ok(Some(_))) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn builder() -> OperatorBuilder {
        OperatorBuilder {
            binary: None,
            kubeconfig_path: PathBuf::from("/k"),
            namespace: "ns-abcdef".to_owned(),
            work_dir: PathBuf::from("/w"),
            identity: None,
            subcommand: "run".to_owned(),
            flag_overrides: Vec::new(),
            extra_args: Vec::new(),
            env: Vec::new(),
            crash_point: None,
        }
    }

    #[test]
    fn default_command_line_is_the_cli_contract() {
        let address: SocketAddr = "127.0.0.1:4242".parse().expect("an address");
        let line = builder().command_line("a", address).join(" ");
        assert_eq!(
            line,
            "run --watch-namespace ns-abcdef --http-addr 127.0.0.1:4242 --audit-store \
             sqlite:/w/audit.db --lease-namespace ns-abcdef --lease-duration 3s \
             --lease-renew-interval 1s --identity a --log-format json --shutdown-grace 10s"
        );
    }

    #[test]
    fn flags_are_replaced_in_place_removed_or_added() {
        let address: SocketAddr = "127.0.0.1:1".parse().expect("an address");
        let line = builder()
            .flag("--lease-duration", "15s")
            .without_flag("--shutdown-grace")
            .flag("--new-flag", "x")
            .without_flag("--not-there")
            .arg("--verbose")
            .audit_store("postgres://db")
            .command_line("b", address);
        assert_eq!(
            line.join(" "),
            "run --watch-namespace ns-abcdef --http-addr 127.0.0.1:1 --audit-store postgres://db \
             --lease-namespace ns-abcdef --lease-duration 15s --lease-renew-interval 1s \
             --identity b --log-format json --new-flag x --verbose"
        );
    }

    #[test]
    fn exit_descriptions() {
        assert_eq!(describe_exit(ExitStatus::from_raw(1 << 8)), "exit code 1");
        assert_eq!(describe_exit(ExitStatus::from_raw(6)), "signal 6 (SIGABRT)");
    }
}
