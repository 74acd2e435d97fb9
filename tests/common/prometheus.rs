//! A real Prometheus (Debian's `prometheus` package) for the end-to-end tests: started on a
//! free port with its own storage directory and a generated config, queried over its HTTP
//! API with polling deadlines, stopped and restarted on the same storage.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{DEADLINE, free_port, http_get, temp_dir};

/// One series of a query result: its labels and value.
pub type Series = (BTreeMap<String, String>, f64);

/// A running `prometheus`; killed on drop.
pub struct Prometheus {
    child: Option<Child>,
    pub port: u16,
    pub dir: PathBuf,
    config: PathBuf,
}

/// A scrape job: every second, `honor_labels` so the exporter's `job` stays.
pub fn scrape_config(targets: &[u16]) -> String {
    let targets: Vec<String> = targets.iter().map(|p| format!("'127.0.0.1:{p}'")).collect();
    format!(
        "global: {{ scrape_interval: 1s, evaluation_interval: 1s }}\n\
         scrape_configs:\n\
         \x20 - job_name: sightline\n\
         \x20   honor_labels: true\n\
         \x20   static_configs: [ {{ targets: [{}] }} ]\n",
        targets.join(", ")
    )
}

impl Prometheus {
    /// Starts Prometheus with `config` (YAML), the remote-write receiver and exemplar storage
    /// on, and waits until it is ready.
    pub async fn start(config: &str) -> Prometheus {
        let dir = temp_dir("prometheus");
        let path = dir.join("prometheus.yml");
        std::fs::write(&path, config).expect("write prometheus.yml");
        let mut p = Prometheus {
            child: None,
            port: free_port(),
            dir,
            config: path,
        };
        p.restart().await;
        p
    }

    /// (Re)starts the process on the same port and storage.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let log = std::fs::File::create(self.dir.join("prometheus.log")).expect("log file");
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", self.config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                self.dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{}", self.port))
            .arg("--web.enable-remote-write-receiver")
            .arg("--enable-feature=exemplar-storage")
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn prometheus (apt-get install prometheus)");
        self.child = Some(child);
        let url = self.url("/-/ready");
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Ok((200, _)) = http_get(&url).await {
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!("prometheus exited with {status}: {}", self.logs());
            }
            assert!(
                Instant::now() < deadline,
                "prometheus not ready: {}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops the process (SIGTERM, so the head is kept in the WAL) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let deadline = Instant::now() + DEADLINE;
            while matches!(child.try_wait(), Ok(None)) {
                if Instant::now() > deadline {
                    let _ = child.kill();
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The remote-write receiver's URL.
    pub fn write_url(&self) -> String {
        self.url("/api/v1/write")
    }

    /// An instant query; `None` while the API cannot answer.
    pub async fn query(&self, promql: &str) -> Option<Vec<Series>> {
        let (status, body) =
            http_get(&self.url(&format!("/api/v1/query?query={}", encode(promql))))
                .await
                .ok()?;
        if status != 200 {
            return None;
        }
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        let result = v["data"]["result"].as_array()?;
        Some(
            result
                .iter()
                .map(|s| {
                    let labels = s["metric"]
                        .as_object()
                        .map(|m| {
                            m.iter()
                                .map(|(k, v)| {
                                    (k.clone(), v.as_str().unwrap_or_default().to_string())
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    let value = s["value"][1]
                        .as_str()
                        .and_then(|v| v.parse::<f64>().ok())
                        .unwrap_or(f64::NAN);
                    (labels, value)
                })
                .collect(),
        )
    }

    /// Polls `promql` until `pred` holds for its result; returns the result, or panics with
    /// the last one at the deadline.
    pub async fn wait_for(&self, promql: &str, pred: impl Fn(&[Series]) -> bool) -> Vec<Series> {
        let deadline = Instant::now() + DEADLINE;
        let mut last = None;
        loop {
            if let Some(result) = self.query(promql).await {
                if pred(&result) {
                    return result;
                }
                last = Some(result);
            }
            assert!(
                Instant::now() < deadline,
                "{promql}: condition not met; last result {last:?}\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The series of `promql` once their values add up to `want`.
    pub async fn wait_for_sum(&self, promql: &str, want: f64) -> Vec<Series> {
        self.wait_for(promql, |r| r.iter().map(|(_, v)| v).sum::<f64>() == want)
            .await
    }

    /// The one value of `promql` once it equals `want`.
    pub async fn wait_value(&self, promql: &str, want: f64) {
        self.wait_for(promql, |r| r.len() == 1 && r[0].1 == want)
            .await;
    }

    /// The exemplars Prometheus stored for `promql` over the last hour, as their label maps.
    pub async fn exemplars(&self, promql: &str) -> Vec<BTreeMap<String, String>> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let url = self.url(&format!(
            "/api/v1/query_exemplars?query={}&start={}&end={}",
            encode(promql),
            now - 3600,
            now + 60
        ));
        let Ok((200, body)) = http_get(&url).await else {
            return Vec::new();
        };
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        v["data"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|s| s["exemplars"].as_array().cloned().unwrap_or_default())
            .map(|e| {
                e["labels"]
                    .as_object()
                    .map(|m| {
                        m.iter()
                            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                            .collect()
                    })
                    .unwrap_or_default()
            })
            .collect()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Percent-encodes a query parameter.
pub fn encode(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
