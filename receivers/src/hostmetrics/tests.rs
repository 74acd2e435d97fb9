use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use pipeline_core::proto::tonic::metrics::v1::{ResourceMetrics, metric::Data, number_data_point};
use pipeline_core::testing::check_receiver;

use super::*;
use pipeline_core::{ComponentConfig as _, DynReceiverFactory};
use serde_json::Value;

fn config(root: &Path, scrapers: Value) -> HostMetricsConfig {
    let mut c = HostMetricsConfig::parse(&serde_json::json!({ "scrapers": scrapers })).unwrap();
    c.root_path = root.to_path_buf();
    c
}

fn all() -> Value {
    let mut s = Factory.default_config()["scrapers"].clone();
    s["network"] = serde_json::json!({ "connections": true });
    s
}

/// name -> (sorted "k=v,..." attributes -> value), plus start times per metric.
fn points(rm: &ResourceMetrics) -> BTreeMap<String, BTreeMap<String, f64>> {
    let mut out = BTreeMap::new();
    for m in &rm.scope_metrics[0].metrics {
        let dps = match m.data.as_ref().unwrap() {
            Data::Sum(s) => &s.data_points,
            Data::Gauge(g) => &g.data_points,
            _ => panic!("unexpected type"),
        };
        let mut series = BTreeMap::new();
        for dp in dps {
            let mut attrs: Vec<String> = dp
                .attributes
                .iter()
                .map(|kv| {
                    format!(
                        "{}={}",
                        kv.key,
                        text(kv.value.as_ref().and_then(|v| v.value.as_ref()).unwrap())
                    )
                })
                .collect();
            attrs.sort();
            let v = match dp.value.unwrap() {
                number_data_point::Value::AsInt(i) => i as f64,
                number_data_point::Value::AsDouble(d) => d,
            };
            series.insert(attrs.join(","), v);
        }
        out.insert(m.name.clone(), series);
    }
    out
}

fn text(v: &pipeline_core::proto::tonic::common::v1::any_value::Value) -> String {
    pipeline_core::attributes::to_text(v).unwrap().into_owned()
}

fn fixture() -> PathBuf {
    let root = std::env::temp_dir().join(format!(
        "sightline-hostfs-{}-{}",
        std::process::id(),
        rand_suffix()
    ));
    let files: &[(&str, &str)] = &[
        (
            "proc/stat",
            "cpu  300 20 100 1000 50 5 5 0 0 0\ncpu0 200 10 60 400 30 3 2 0 0 0\ncpu1 100 10 40 600 20 2 3 0 0 0\n\
             intr 1 2 3\nctxt 999\nbtime 1700000000\nprocesses 4242\nprocs_running 3\nprocs_blocked 1\n",
        ),
        ("proc/loadavg", "0.50 0.25 0.10 2/345 6789\n"),
        (
            "proc/meminfo",
            "MemTotal:       1000 kB\nMemFree:         300 kB\nMemAvailable:    600 kB\nBuffers:          50 kB\nCached:          200 kB\n\
             SwapCached:        0 kB\nSwapTotal:       400 kB\nSwapFree:        100 kB\nSReclaimable:     40 kB\nSUnreclaim:       10 kB\n",
        ),
        ("proc/vmstat", "nr_free_pages 75\npswpin 11\npswpout 22\n"),
        (
            "proc/diskstats",
            "   8       0 sda 100 0 2000 300 50 0 1000 400 2 600 700 0 0 0 0\n   8       1 sda1 90 0 1800 280 40 0 900 380 0 550 650 0 0 0 0\n\
             \x20  7       0 loop0 5 0 10 1 0 0 0 0 0 1 1 0 0 0 0\n",
        ),
        (
            "proc/net/dev",
            "Inter-|   Receive                                                |  Transmit\n \
             face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n  \
             eth0: 1000 10 1 2 0 0 0 0 2000 20 3 4 0 0 0 0\n    lo: 500 5 0 0 0 0 0 0 500 5 0 0 0 0 0 0\n",
        ),
        (
            "proc/net/tcp",
            "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   \
             0: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1\n   \
             1: 0100007F:1F90 0100007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 2 1\n",
        ),
        (
            "proc/net/tcp6",
            "  sl  local_address remote_address st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   \
             0: 00000000000000000000000000000000:1F90 00000000000000000000000000000000:0000 01 00000000:00000000 00:00000000 00000000 0 0 3 1\n",
        ),
        ("proc/sys/kernel/hostname", "fixture-node\n"),
        ("proc/self/mounts", "proc /proc proc rw 0 0\n"),
    ];
    for (path, text) in files {
        let p = root.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    root
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

#[tokio::test]
async fn conformance() {
    check_receiver(
        &Factory,
        &serde_json::json!({ "scrapers": { "load": null }, "collection_interval": "1s" }),
    )
    .await;
}

#[test]
fn fixture_tree_yields_exactly_its_numbers() {
    let root = fixture();
    let mut s = HostScraper::new(&config(&root, all()));
    let (rm, problems) = s.scrape();
    assert!(problems.is_empty(), "{problems:?}");
    let p = points(&rm);
    let attrs: Vec<String> = rm
        .resource
        .as_ref()
        .unwrap()
        .attributes
        .iter()
        .map(|kv| kv.key.clone())
        .collect();
    assert_eq!(attrs, ["host.name", "host.arch", "os.type"]);
    assert_eq!(
        text(
            rm.resource.as_ref().unwrap().attributes[0]
                .value
                .as_ref()
                .unwrap()
                .value
                .as_ref()
                .unwrap()
        ),
        "fixture-node"
    );

    assert_eq!(p["system.cpu.time"]["cpu=0,state=user"], 2.0);
    assert_eq!(p["system.cpu.time"]["cpu=1,state=idle"], 6.0);
    assert_eq!(p["system.cpu.time"].len(), 16);
    assert_eq!(p["system.cpu.logical.count"][""], 2.0);
    let cpu0: f64 = p["system.cpu.utilization"]
        .iter()
        .filter(|(k, _)| k.starts_with("cpu=0,"))
        .map(|(_, v)| v)
        .sum();
    assert!((cpu0 - 1.0).abs() < 1e-9, "{cpu0}");
    assert_eq!(
        p["system.cpu.utilization"]["cpu=0,state=idle"],
        400.0 / 705.0
    );

    assert_eq!(p["system.cpu.load_average.1m"][""], 0.5);
    assert_eq!(p["system.cpu.load_average.15m"][""], 0.1);

    let mem = &p["system.memory.usage"];
    assert_eq!(mem["state=used"], 400.0 * 1024.0);
    assert_eq!(mem["state=free"], 300.0 * 1024.0);
    assert_eq!(mem["state=slab_reclaimable"], 40.0 * 1024.0);
    assert_eq!(
        mem.values().sum::<f64>(),
        p["system.memory.limit"][""],
        "states sum to MemTotal"
    );
    assert_eq!(p["system.memory.utilization"]["state=used"], 0.4);

    assert_eq!(p["system.paging.usage"]["state=used"], 300.0 * 1024.0);
    assert_eq!(p["system.paging.operations"]["direction=out"], 22.0);

    // No /sys/block in the fixture: partitions can't be told apart, loop devices are still skipped.
    assert_eq!(
        p["system.disk.io"]["device=sda,direction=read"],
        2000.0 * 512.0
    );
    assert_eq!(
        p["system.disk.operations"]["device=sda,direction=write"],
        50.0
    );
    assert_eq!(p["system.disk.io_time"]["device=sda"], 0.6);
    assert_eq!(
        p["system.disk.operation_time"]["device=sda,direction=write"],
        0.4
    );
    assert_eq!(p["system.disk.pending_operations"]["device=sda"], 2.0);
    assert!(!p["system.disk.io"].keys().any(|k| k.contains("loop0")));

    assert_eq!(
        p["system.network.io"]["device=eth0,direction=receive"],
        1000.0
    );
    assert_eq!(
        p["system.network.io"]["device=eth0,direction=transmit"],
        2000.0
    );
    assert_eq!(
        p["system.network.errors"]["device=eth0,direction=transmit"],
        3.0
    );
    assert_eq!(
        p["system.network.dropped"]["device=eth0,direction=receive"],
        2.0
    );
    assert_eq!(
        p["system.network.connections"]["protocol=tcp,state=ESTABLISHED"],
        2.0
    );
    assert_eq!(
        p["system.network.connections"]["protocol=tcp,state=LISTEN"],
        1.0
    );

    assert_eq!(p["system.processes.count"]["status=running"], 3.0);
    assert_eq!(p["system.processes.created"][""], 4242.0);

    // The only mount is procfs, a pseudo file system: nothing reported, nothing failed.
    assert!(!p.contains_key("system.filesystem.usage"));

    // Cumulative sums start at boot (btime), and the start stays put.
    for m in &rm.scope_metrics[0].metrics {
        if let Some(Data::Sum(sum)) = &m.data {
            assert!(
                sum.data_points
                    .iter()
                    .all(|d| d.start_time_unix_nano == 1_700_000_000_000_000_000),
                "{}",
                m.name
            );
        }
    }
    std::fs::remove_dir_all(root).unwrap();
}

#[test]
fn missing_and_malformed_files_are_errors_not_panics() {
    let root = fixture();
    std::fs::write(root.join("proc/loadavg"), "garbage\n").unwrap();
    std::fs::remove_file(root.join("proc/diskstats")).unwrap();
    std::fs::write(root.join("proc/net/tcp"), "header\n 0: x y ZZ\n").unwrap();
    std::fs::write(root.join("proc/meminfo"), "MemTotal: lots kB\n").unwrap();
    let mut s = HostScraper::new(&config(&root, all()));
    let (rm, problems) = s.scrape();
    let scrapers: Vec<&str> = problems.iter().map(ScrapeProblem::scraper).collect();
    for expected in ["load", "disk", "network", "memory", "paging"] {
        assert!(
            scrapers.contains(&expected),
            "{expected} missing from {problems:?}"
        );
    }
    // What could be read still came out.
    let p = points(&rm);
    assert!(
        p.contains_key("system.cpu.time")
            && p.contains_key("system.network.io")
            && p.contains_key("system.processes.count")
    );
    std::fs::remove_dir_all(root).unwrap();
}

#[test]
fn utilization_is_measured_between_scrapes() {
    let root = fixture();
    let mut s = HostScraper::new(&config(&root, serde_json::json!({ "cpu": null })));
    s.scrape();
    std::fs::write(
        root.join("proc/stat"),
        "cpu0 210 10 60 490 30 3 2 0\nbtime 1700000000\n",
    )
    .unwrap();
    let p = points(&s.scrape().0);
    assert_eq!(p["system.cpu.utilization"]["cpu=0,state=user"], 0.1);
    assert_eq!(p["system.cpu.utilization"]["cpu=0,state=idle"], 0.9);
    std::fs::remove_dir_all(root).unwrap();
}

fn host_config(scrapers: Value) -> HostMetricsConfig {
    config(Path::new("/"), scrapers)
}

fn meminfo_kb(key: &str) -> f64 {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with(&format!("{key}:")))
        .unwrap();
    line.split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<f64>()
        .unwrap()
        * 1024.0
}

#[test]
fn agrees_with_independent_readings_of_this_host() {
    let mut s = HostScraper::new(&host_config(
        serde_json::json!({ "memory": null, "load": null, "network": null, "cpu": null,
        "filesystem": { "include_fs_types": ["ext4", "xfs", "btrfs", "overlay", "vfat", "ext3", "ext2"] } }),
    ));
    let (first, problems) = s.scrape();
    assert!(problems.is_empty(), "{problems:?}");
    let p1 = points(&first);
    assert_eq!(p1["system.memory.limit"][""], meminfo_kb("MemTotal"));
    assert_eq!(
        p1["system.memory.usage"].values().sum::<f64>(),
        meminfo_kb("MemTotal")
    );

    // statvfs of / agrees with the states: used + free + reserved = size.
    let st = rustix::fs::statvfs("/").unwrap();
    let root_series: Vec<(&String, &f64)> = p1["system.filesystem.usage"]
        .iter()
        .filter(|(k, _)| k.contains("mountpoint=/,"))
        .collect();
    assert_eq!(root_series.len(), 3, "{:?}", p1["system.filesystem.usage"]);
    let total: f64 = root_series.iter().map(|(_, v)| **v).sum();
    assert_eq!(total, (st.f_blocks * st.f_frsize) as f64);

    // Load and network counters bracket readings taken around the scrape.
    let load: f64 = std::fs::read_to_string("/proc/loadavg")
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!((p1["system.cpu.load_average.1m"][""] - load).abs() < 1.0);
    let dev = std::fs::read_to_string("/proc/net/dev").unwrap();
    let lo_rx: f64 = dev
        .lines()
        .find(|l| l.trim_start().starts_with("lo:"))
        .unwrap()
        .split(':')
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(p1["system.network.io"]["device=lo,direction=receive"] <= lo_rx);

    // Counters never decrease; utilization per CPU sums to 1.
    let (second, _) = s.scrape();
    let p2 = points(&second);
    for name in [
        "system.cpu.time",
        "system.network.io",
        "system.network.packets",
    ] {
        for (k, v) in &p1[name] {
            assert!(p2[name][k] >= *v, "{name} {k} went down");
        }
    }
    let mut per_cpu: BTreeMap<String, f64> = BTreeMap::new();
    for (k, v) in &p2["system.cpu.utilization"] {
        *per_cpu
            .entry(k.split(',').next().unwrap().to_string())
            .or_default() += v;
    }
    for (cpu, sum) in per_cpu {
        assert!(sum == 0.0 || (sum - 1.0).abs() < 1e-9, "{cpu}: {sum}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receiver_emits_into_the_pipeline_and_counts_errors() {
    use pipeline_core::testing::CollectingConsumer;
    let root = fixture();
    std::fs::write(root.join("proc/loadavg"), "broken").unwrap();
    let out = CollectingConsumer::new();
    let next = pipeline_core::PerSignal::from_fn(|s| {
        (s == Signal::Metrics).then(|| out.clone() as SharedConsumer)
    });
    let ctx = CreateContext::for_tests(pipeline_core::ComponentKind::Receiver, "hostmetrics");
    let telemetry = ctx.telemetry.clone();
    let cfg = serde_json::json!({ "root_path": root, "collection_interval": "20ms", "initial_delay": "0s",
        "scrapers": { "load": null, "processes": null } });
    let r = Factory.create(ctx, &cfg, next).unwrap();
    r.start(&Host::new(std::env::temp_dir())).await.unwrap();
    assert!(
        out.wait_for_items(9, std::time::Duration::from_secs(10))
            .await
            >= 9,
        "three scrapes of three points (load fails)"
    );
    r.shutdown(Instant::now() + std::time::Duration::from_secs(5))
        .await
        .unwrap();
    let errors = telemetry
        .counter_family(
            "sightline_hostmetrics_scrape_errors_total",
            "x",
            &["scraper"],
        )
        .unwrap()
        .with_label_values(&["hostmetrics", "load"])
        .get();
    assert!(errors >= 3, "every failed scrape is counted: {errors}");
    std::fs::remove_dir_all(root).unwrap();
}

#[test]
fn config_errors() {
    assert_eq!(
        Factory
            .validate(&serde_json::json!({ "scrapers": {} }))
            .unwrap_err()
            .path,
        "scrapers"
    );
    assert_eq!(
        Factory
            .validate(&serde_json::json!({ "scrapers": { "cpuu": null } }))
            .unwrap_err()
            .path,
        "scrapers.cpuu"
    );
    assert_eq!(
        Factory
            .validate(&serde_json::json!({ "root_path": "hostfs", "scrapers": { "cpu": null } }))
            .unwrap_err()
            .path,
        "root_path"
    );
    let fs = FilesystemOptions::default();
    assert!(
        fs.includes("ext4", "/") && !fs.includes("tmpfs", "/run") && !fs.includes("overlay", "/")
    );
}
