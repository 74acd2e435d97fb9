//! A real `redis-server` on a free port for the tests of the shared SLO store, and the SLO
//! figures that must agree between instances sharing it.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{DEADLINE, free_port, temp_dir};

/// A `redis-server` on a free port, without persistence except what `stop` saves.
pub struct Redis {
    child: Option<Child>,
    pub port: u16,
    dir: PathBuf,
    extra: Vec<String>,
}

impl Redis {
    pub fn start() -> Redis {
        Redis::start_with(free_port(), Vec::new())
    }

    pub fn start_with(port: u16, extra: Vec<String>) -> Redis {
        let mut r = Redis {
            child: None,
            port,
            dir: temp_dir("redis"),
            extra,
        };
        r.spawn();
        r
    }

    pub fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .args(&self.extra)
            .arg("--dir")
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (apt-get install redis-server)");
        self.child = Some(child);
        let deadline = Instant::now() + DEADLINE;
        while self.command(&["PING"]).as_deref() != Some("+PONG") {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Sends one command in RESP; returns the first line of the answer.
    pub fn command(&self, args: &[&str]) -> Option<String> {
        self.answer(args)?.lines().next().map(str::to_string)
    }

    /// Sends one command in RESP; returns what one read brings back.
    pub fn answer(&self, args: &[&str]) -> Option<String> {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        let mut req = format!("*{}\r\n", args.len());
        for a in args {
            req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        s.write_all(req.as_bytes()).ok()?;
        let mut buf = [0u8; 4096];
        let n = s.read(&mut buf).ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).into_owned())
    }

    /// A real stop: `SHUTDOWN SAVE` (the data comes back with the next start, as from a
    /// persistent Redis), then waits for the process to exit.
    pub fn stop(&mut self) {
        let _ = self.command(&["SHUTDOWN", "SAVE"]);
        let mut child = self.child.take().expect("running");
        let deadline = Instant::now() + DEADLINE;
        while child.try_wait().ok().flatten().is_none() {
            assert!(Instant::now() < deadline, "redis-server did not stop");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The figures that must agree between instances: everything but the evaluation time and
/// when each instance saw its alerts start (its own evaluations).
pub fn slo_figures(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(list) = v.as_array_mut() {
        for slo in list {
            if let Some(o) = slo.as_object_mut() {
                o.remove("evaluated_at");
                for a in o
                    .get_mut("alerts")
                    .and_then(Value::as_array_mut)
                    .into_iter()
                    .flatten()
                {
                    if let Some(a) = a.as_object_mut() {
                        a.remove("since");
                    }
                }
            }
        }
    }
    v
}
