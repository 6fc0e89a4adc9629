//! The hub under test as a child process, and what `/proc` says about its memory and CPU.

use crate::TOKEN;
use anyhow::{Context, bail};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The MongoDB the hub under test keeps its register in (`--hub-store`), with the fresh
/// database of this run.
pub(crate) struct HubStore {
    /// The server.
    pub(crate) uri: String,
    /// The run's database.
    pub(crate) database: String,
}

static HUB_STORE: std::sync::OnceLock<Option<HubStore>> = std::sync::OnceLock::new();

/// Sets the hub's store for this run (once, at start-up).
pub(crate) fn set_hub_store(uri: Option<String>) {
    let store = uri.map(|uri| HubStore {
        uri,
        database: format!("bench_{}", uuid::Uuid::new_v4().simple()),
    });
    let _ = HUB_STORE.set(store);
}

/// The hub's store for this run, `None` for the embedded one.
pub(crate) fn hub_store() -> Option<&'static HubStore> {
    HUB_STORE.get().and_then(Option::as_ref)
}

/// A hub running as a child process.
pub(crate) struct Hub {
    child: Child,
    pub(crate) url: String,
    _dir: Option<tempfile::TempDir>,
}

impl Drop for Hub {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Hub {
    pub(crate) async fn start(dir: Option<tempfile::TempDir>) -> anyhow::Result<Self> {
        Self::start_with(dir, &[]).await
    }

    /// The hub under test with `extra` arguments, on the store `--hub-store` names (the
    /// embedded one by default).
    pub(crate) async fn start_with(
        dir: Option<tempfile::TempDir>,
        extra: &[&str],
    ) -> anyhow::Result<Self> {
        let mut args = vec!["--role", "hub"];
        args.extend_from_slice(extra);
        match hub_store() {
            Some(store) => {
                args.extend(["--store", store.uri.as_str()]);
                Self::spawn_env(dir, &args, &[("SORCHA_MONGO__DATABASE", &store.database)]).await
            }
            None => Self::spawn(dir, &args).await,
        }
    }

    /// A node (hub or peer, by `role_args`) on `dir` (a fresh one if `None`).
    pub(crate) async fn spawn(
        dir: Option<tempfile::TempDir>,
        role_args: &[&str],
    ) -> anyhow::Result<Self> {
        Self::spawn_env(dir, role_args, &[]).await
    }

    /// [`Hub::spawn`] with more environment (`SORCHA_…` settings).
    pub(crate) async fn spawn_env(
        dir: Option<tempfile::TempDir>,
        role_args: &[&str],
        envs: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let dir = match dir {
            Some(d) => d,
            None => tempfile::tempdir()?,
        };
        let exe = std::env::current_exe()?;
        let binary = exe.with_file_name("sorcha-peer");
        let mut child = Command::new(&binary)
            .arg("serve")
            .args(role_args)
            .args([
                "--listen",
                "127.0.0.1:0",
                "--admin-token",
                TOKEN,
                "--data-dir",
            ])
            .arg(dir.path())
            .env("RUST_LOG", "warn")
            .env("SORCHA_HUB__MAX_SESSIONS", "100000")
            // Benchmark subscribers do not heartbeat; keep their sessions for the whole run.
            .env("SORCHA_HUB__SESSION_TIMEOUT", "1h")
            .envs(envs.iter().copied())
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        let mut lines = BufReader::new(child.stderr.take().context("stderr")?).lines();
        let url = tokio::time::timeout(Duration::from_secs(120), async {
            while let Some(line) = lines.next_line().await? {
                if let Some(addr) = line.strip_prefix("sorcha-peer listening on ") {
                    return Ok(addr.trim().to_owned());
                }
            }
            bail!("hub exited before listening")
        })
        .await
        .context("hub did not start")??;
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Self {
            child,
            url,
            _dir: Some(dir),
        })
    }

    /// Asks the hub to stop (SIGTERM) and gives it a bounded time to exit cleanly, so a
    /// profiler wrapped around it (valgrind, perf) can write its report; `kill_on_drop` ends
    /// it otherwise.
    pub(crate) fn stop(&self) {
        let pid = self.pid();
        if pid == 0 {
            return;
        }
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
        for _ in 0..300 {
            if std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map_or(true, |s| s.contains(") Z "))
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Asks the process to stop (SIGTERM) without waiting, so many stop at once.
    pub(crate) fn terminate(&self) {
        let pid = self.pid();
        if pid != 0 {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id().unwrap_or(0)
    }

    /// Resident set size in KiB.
    pub(crate) fn rss_kib(&self) -> u64 {
        proc_rss_kib(self.pid())
    }

    /// Peak resident set size so far (`VmHWM`) in KiB.
    pub(crate) fn peak_rss_kib(&self) -> u64 {
        proc_status_kib(self.pid(), "VmHWM:")
    }

    /// User + system CPU seconds used so far.
    pub(crate) fn cpu_seconds(&self) -> f64 {
        let cpu = proc_cpu(self.pid());
        cpu.user + cpu.sys
    }

    /// The hub's `/metrics` as it reads now.
    pub(crate) async fn metrics_text(&self) -> anyhow::Result<String> {
        Ok(reqwest::Client::new()
            .get(format!("{}/metrics", self.url))
            .timeout(Duration::from_secs(10))
            .send()
            .await?
            .error_for_status()?
            .text()
            .await?)
    }

    /// The hub's `metric` (a Prometheus sample name) by its one label's value, as its
    /// `/metrics` says now.
    pub(crate) async fn samples(&self, metric: &str) -> anyhow::Result<BTreeMap<String, f64>> {
        let text = self.metrics_text().await?;
        let prefix = format!("{metric}{{");
        Ok(text
            .lines()
            .filter_map(|line| line.strip_prefix(&prefix))
            .filter_map(|rest| {
                let (labels, value) = rest.split_once("} ")?;
                let label = labels.split_once("=\"")?.1.trim_end_matches('"');
                Some((label.to_owned(), value.trim().parse().ok()?))
            })
            .collect())
    }

    /// The hub's integrity check, over REST: entries checked and publisher signatures
    /// verified.
    pub(crate) async fn verify(&self) -> anyhow::Result<(u64, u64)> {
        let view: serde_json::Value = reqwest::Client::new()
            .get(format!("{}/api/v1/system-register/verify", self.url))
            .bearer_auth(TOKEN)
            .timeout(Duration::from_secs(120))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        if view["ok"] != true {
            bail!("the hub's register does not verify: {view}");
        }
        let count = |field: &str| view[field].as_u64().unwrap_or(0);
        Ok((count("checked"), count("signed")))
    }
}

/// Resident set size of process `pid` in KiB (0 if it is gone).
pub(crate) fn proc_rss_kib(pid: u32) -> u64 {
    proc_status_kib(pid, "VmRSS:")
}

/// A `/proc/<pid>/status` figure in KiB (0 if the process is gone).
pub(crate) fn proc_status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// CPU seconds a process has used, in user space and in the kernel.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Cpu {
    user: f64,
    sys: f64,
}

impl Cpu {
    /// Adds `<name>_cpu_user_s` and `<name>_cpu_sys_s` to a report's figures.
    pub(crate) fn record(self, figures: &mut Value, name: &str) {
        figures[format!("{name}_cpu_user_s")] = json!(self.user);
        figures[format!("{name}_cpu_sys_s")] = json!(self.sys);
    }

    /// User and system seconds together.
    pub(crate) fn seconds(&self) -> f64 {
        self.user + self.sys
    }

    /// What was used since `earlier`.
    pub(crate) fn delta(self, earlier: Cpu) -> Cpu {
        Cpu {
            user: self.user - earlier.user,
            sys: self.sys - earlier.sys,
        }
    }
}

/// CPU used so far by process `pid` (`utime` and `stime` of `/proc/<pid>/stat`).
pub(crate) fn proc_cpu(pid: u32) -> Cpu {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(") ")
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let seconds = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0) as f64
            / 100.0
    };
    Cpu {
        user: seconds(11),
        sys: seconds(12),
    }
}

/// Waits (at most `patience`) until each of the hubs at `urls` lists all of them in its
/// `/api/v1/fleet`: hubs sharing a store have read each other's presence.
pub(crate) async fn hubs_see_each_other(
    http: &reqwest::Client,
    urls: &[String],
    patience: Duration,
) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + patience;
    for url in urls {
        loop {
            let page: serde_json::Value = match http.get(format!("{url}/api/v1/fleet")).send().await
            {
                Ok(r) => r.json().await.unwrap_or_default(),
                Err(_) => serde_json::Value::Null,
            };
            if page["hubs"].as_array().map(Vec::len) == Some(urls.len()) {
                break;
            }
            if std::time::Instant::now() > deadline {
                bail!("the hubs do not see each other");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}
