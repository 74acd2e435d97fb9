//! What ships for deployment: `configs/agent.yaml` and `configs/gateway.yaml` validate with no
//! environment set, and the Kubernetes manifests in `deploy/kubernetes/` parse and agree with
//! them (probes, ports, mounts against `root_path`, ConfigMaps holding the same configs).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn yaml(text: &str) -> Value {
    serde_saphyr::from_str(text).expect("YAML")
}

/// Every document of every manifest under deploy/kubernetes, with its file.
fn manifests() -> Vec<(PathBuf, Value)> {
    let dir = root().join("deploy/kubernetes");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("deploy/kubernetes")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().and_then(|e| e.to_str()) == Some("yaml"))
        .collect();
    files.sort();
    let mut docs = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let parsed: Vec<Value> = serde_saphyr::from_multiple(&text)
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        assert!(!parsed.is_empty(), "{}: no document", file.display());
        for doc in parsed {
            assert!(
                doc["kind"].is_string(),
                "{}: a document without kind",
                file.display()
            );
            docs.push((file.clone(), doc));
        }
    }
    docs
}

fn find<'a>(docs: &'a [(PathBuf, Value)], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .map(|(_, d)| d)
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

/// `${env:NAME:-default}` -> (NAME, default).
fn env_ref(text: &str) -> (String, String) {
    let inner = text
        .trim()
        .strip_prefix("${env:")
        .and_then(|t| t.strip_suffix('}'))
        .unwrap_or_else(|| panic!("{text:?} is not ${{env:NAME:-default}}"));
    let (name, default) = inner.split_once(":-").expect("a default");
    (name.to_string(), default.to_string())
}

fn container_env(container: &Value, name: &str) -> String {
    container["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == name)
        .and_then(|e| e["value"].as_str())
        .unwrap_or_else(|| panic!("env {name} not set"))
        .to_string()
}

fn port_of(endpoint: &str) -> u64 {
    endpoint.rsplit(':').next().unwrap().parse().unwrap()
}

#[test]
fn agent_and_gateway_configs_validate_with_no_environment() {
    for (file, wants) in [
        (
            "configs/agent.yaml",
            &["loadbalancing", "filelog", "hostmetrics", "otlp", "batch"][..],
        ),
        (
            "configs/gateway.yaml",
            &[
                "redaction",
                "request_id",
                "batch",
                "jaeger",
                "loki",
                "sli",
                "prometheus",
                "slo",
            ][..],
        ),
    ] {
        let out = Command::new(common::bin())
            .args(["validate", "--config"])
            .arg(root().join(file))
            .env_clear()
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{file}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let config = yaml(&read(file));
        let text = serde_json::to_string(&config).unwrap();
        for want in wants {
            assert!(
                text.contains(&format!("\"{want}")),
                "{file} does not use {want}"
            );
        }
        // Every address is an env reference with a default.
        for line in read(file).lines().filter(|l| l.contains("${env:")) {
            assert!(line.contains(":-"), "{file}: no default in {line:?}");
        }
    }
    let gateway = yaml(&read("configs/gateway.yaml"));
    assert_eq!(gateway["exporters"]["slo"]["store"]["type"], "redis");
    let agent = yaml(&read("configs/agent.yaml"));
    let lb = &agent["exporters"]["loadbalancing"];
    assert!(lb["resolver"]["dns"]["hostname"].is_string());
}

#[test]
fn kubernetes_manifests_agree_with_the_configs() {
    let docs = manifests();

    // The ConfigMaps hold the shipped configs verbatim.
    for (name, file) in [
        ("sightline-agent", "configs/agent.yaml"),
        ("sightline-gateway", "configs/gateway.yaml"),
    ] {
        let cm = find(&docs, "ConfigMap", name);
        assert_eq!(
            cm["data"]["config.yaml"].as_str().unwrap(),
            read(file),
            "ConfigMap {name} differs from {file}: run deploy/kubernetes/sync-configmaps.sh"
        );
    }

    let agent_config = yaml(&read("configs/agent.yaml"));
    let gateway_config = yaml(&read("configs/gateway.yaml"));
    let daemonset = find(&docs, "DaemonSet", "sightline-agent");
    let deployment = find(&docs, "Deployment", "sightline-gateway");
    for (workload, config, configmap) in [
        (daemonset, &agent_config, "sightline-agent"),
        (deployment, &gateway_config, "sightline-gateway"),
    ] {
        let pod = &workload["spec"]["template"]["spec"];
        let container = &pod["containers"][0];
        let health_port = port_of(config["service"]["health"]["endpoint"].as_str().unwrap());
        assert_eq!(health_port, 13133);

        // Probes exactly as the seed guide sets them, on the config's health port.
        let probe = |kind: &str, path: &str| {
            let p = &container[kind];
            assert_eq!(p["httpGet"]["path"], path, "{kind}");
            assert_eq!(p["httpGet"]["port"].as_u64(), Some(health_port), "{kind}");
            p.clone()
        };
        let startup = probe("startupProbe", "/health/startup");
        assert_eq!(startup["failureThreshold"], 30);
        assert_eq!(startup["periodSeconds"], 10);
        let live = probe("livenessProbe", "/health/live");
        assert_eq!(live["initialDelaySeconds"], 30);
        assert_eq!(live["periodSeconds"], 10);
        assert_eq!(live["failureThreshold"], 3);
        let ready = probe("readinessProbe", "/health/ready");
        assert_eq!(ready["initialDelaySeconds"], 5);
        assert_eq!(ready["periodSeconds"], 5);
        assert_eq!(ready["failureThreshold"], 3);

        // The config comes from the ConfigMap, at the path the args name.
        let args: Vec<&str> = container["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        let config_path = args[args.iter().position(|a| *a == "--config").unwrap() + 1];
        let volume = pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["configMap"]["name"] == configmap)
            .expect("a ConfigMap volume");
        let mount = mount_of(container, volume["name"].as_str().unwrap());
        assert_eq!(
            format!("{}/config.yaml", mount["mountPath"].as_str().unwrap()),
            config_path
        );

        // The container ports include every listener of the config.
        let ports: Vec<u64> = container["ports"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["containerPort"].as_u64().unwrap())
            .collect();
        for p in [4317, 4318, health_port] {
            assert!(ports.contains(&p), "port {p} not exposed");
        }
        assert!(container["resources"]["requests"]["cpu"].is_string());
        assert!(container["resources"]["limits"]["memory"].is_string());
    }

    // The agent: host / read-only where hostmetrics' root_path points, host /var/log
    // read-only where filelog reads, tolerations for every node.
    let pod = &daemonset["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    let (root_var, root_default) = env_ref(
        agent_config["receivers"]["hostmetrics"]["root_path"]
            .as_str()
            .unwrap(),
    );
    assert_eq!(root_default, "/");
    let root_path = container_env(container, &root_var);
    let hostfs = host_path_mount(pod, container, "/");
    assert_eq!(hostfs["mountPath"].as_str().unwrap(), root_path);
    assert_eq!(hostfs["readOnly"], true);
    let include = agent_config["receivers"]["filelog"]["include"][0]
        .as_str()
        .unwrap();
    let (logs_var, _) = env_ref(&include[..include.find('}').unwrap() + 1]);
    let logs_path = container_env(container, &logs_var);
    let varlog = host_path_mount(pod, container, "/var/log");
    assert_eq!(varlog["mountPath"].as_str().unwrap(), logs_path);
    assert_eq!(varlog["readOnly"], true);
    let (ckpt_var, _) = env_ref(
        agent_config["receivers"]["filelog"]["storage"]
            .as_str()
            .unwrap(),
    );
    let ckpt = container_env(container, &ckpt_var);
    let writable = container["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| ckpt.starts_with(m["mountPath"].as_str().unwrap()) && m["readOnly"] != true);
    assert!(writable, "filelog's storage {ckpt} is on no writable mount");
    assert!(pod["tolerations"].as_array().is_some_and(|t| !t.is_empty()));

    // The agents find the gateways through the headless Service.
    let service = find(&docs, "Service", "sightline-gateway-headless");
    assert_eq!(service["spec"]["clusterIP"], "None");
    let (host_var, _) = env_ref(
        agent_config["exporters"]["loadbalancing"]["resolver"]["dns"]["hostname"]
            .as_str()
            .unwrap(),
    );
    assert!(
        container_env(container, &host_var).starts_with("sightline-gateway-headless."),
        "the agent's resolver does not name the headless Service"
    );
    let labels = &deployment["spec"]["template"]["metadata"]["labels"];
    for (k, v) in service["spec"]["selector"].as_object().unwrap() {
        assert_eq!(
            &labels[k], v,
            "the Service does not select the gateway pods"
        );
    }
    let pdb = find(&docs, "PodDisruptionBudget", "sightline-gateway");
    for (k, v) in pdb["spec"]["selector"]["matchLabels"].as_object().unwrap() {
        assert_eq!(&labels[k], v, "the PDB does not select the gateway pods");
    }
    let hpa = find(&docs, "HorizontalPodAutoscaler", "sightline-gateway");
    assert_eq!(hpa["spec"]["scaleTargetRef"]["kind"], "Deployment");
    assert_eq!(hpa["spec"]["scaleTargetRef"]["name"], "sightline-gateway");
    assert!(hpa["spec"]["minReplicas"].as_u64() >= pdb["spec"]["minAvailable"].as_u64());
    // Gateways get longer than the config's shutdown_timeout to drain.
    let shutdown = gateway_config["service"]["shutdown_timeout"]
        .as_str()
        .unwrap();
    let grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        .as_u64()
        .unwrap();
    assert!(grace > shutdown.trim_end_matches('s').parse::<u64>().unwrap());
}

fn mount_of<'a>(container: &'a Value, volume: &str) -> &'a Value {
    container["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == volume)
        .unwrap_or_else(|| panic!("volume {volume} not mounted"))
}

/// The mount of the hostPath volume of `host_path`.
fn host_path_mount<'a>(pod: &Value, container: &'a Value, host_path: &str) -> &'a Value {
    let volume = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["hostPath"]["path"] == host_path)
        .unwrap_or_else(|| panic!("no hostPath {host_path}"));
    mount_of(container, volume["name"].as_str().unwrap())
}
