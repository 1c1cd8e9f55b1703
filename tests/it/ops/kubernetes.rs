//! The Kubernetes manifests (`deploy/kubernetes/`) agree with the server
//! they deploy. Every YAML document there is parsed; the container's
//! environment is built as the kubelet builds it (ConfigMap, then `env` in
//! order with `$(NAME)` expanded, cluster-only values such as the pod IP and
//! Secrets replaced by plausible ones) and loaded by the server's own
//! [`Config::load`], which must know every `HEARKEN_*` name. The expected
//! ports, drain timeout and data directory are then read from that loaded
//! config, not from copies here: the probes and the scrape path are asked
//! of a running server, the UDP ports must be one per media worker, the
//! grace period must outlast the drain, and the selectors must select the
//! pods. Renaming a config key, a probe path or a port fails this test.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use hearken::config::{Config, Loaded};
use serde::Deserialize;
use serde_json::Value;

use crate::common::TestServer;

/// The directory of the manifests.
fn manifest_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes")
}

/// Plausible values of the downward API's fields, as a pod would see them.
const POD_NAME: &str = "hearken-0";
const POD_IP: &str = "10.20.30.40";

/// One YAML document and the file it came from.
struct Doc {
    file: String,
    value: Value,
}

/// Every YAML document under `deploy/kubernetes`, and the objects of
/// interest among them.
struct Manifests {
    docs: Vec<Doc>,
}

impl Manifests {
    fn read() -> Self {
        let mut files: Vec<PathBuf> = std::fs::read_dir(manifest_dir())
            .expect("deploy/kubernetes exists")
            .map(|entry| entry.expect("directory entry").path())
            .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
            .collect();
        files.sort();
        assert!(!files.is_empty(), "no YAML files in deploy/kubernetes");
        let mut docs = Vec::new();
        for path in files {
            let file = path
                .file_name()
                .expect("file name")
                .to_string_lossy()
                .into_owned();
            let text = std::fs::read_to_string(&path).expect("manifest readable");
            for document in serde_norway::Deserializer::from_str(&text) {
                let value = Value::deserialize(document)
                    .unwrap_or_else(|e| panic!("{file} is not valid YAML: {e}"));
                // A comment-only document (or a trailing `---`) is nothing.
                if !value.is_null() {
                    docs.push(Doc {
                        file: file.clone(),
                        value,
                    });
                }
            }
        }
        Self { docs }
    }

    /// All objects of `kind`.
    fn all(&self, kind: &str) -> Vec<&Value> {
        self.docs
            .iter()
            .map(|d| &d.value)
            .filter(|v| v["kind"] == kind)
            .collect()
    }

    /// The one object of `kind`.
    fn one(&self, kind: &str) -> &Value {
        let all = self.all(kind);
        assert_eq!(all.len(), 1, "expected exactly one {kind}");
        all[0]
    }

    /// The object of `kind` called `name`.
    fn named(&self, kind: &str, name: &str) -> &Value {
        self.all(kind)
            .into_iter()
            .find(|v| v["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no {kind} named {name} in deploy/kubernetes"))
    }

    fn statefulset(&self) -> &Value {
        self.one("StatefulSet")
    }

    /// The pod template's spec.
    fn pod_spec(&self) -> &Value {
        &self.statefulset()["spec"]["template"]["spec"]
    }

    /// The pod template's labels.
    fn pod_labels(&self) -> BTreeMap<String, String> {
        string_map(&self.statefulset()["spec"]["template"]["metadata"]["labels"])
    }

    /// The Hearken container.
    fn container(&self) -> &Value {
        let containers = self.pod_spec()["containers"]
            .as_array()
            .expect("containers is a list");
        containers
            .iter()
            .find(|c| c["name"] == "hearken")
            .expect("a container named hearken")
    }

    /// The container's port called `name`.
    fn container_port(&self, name: &str) -> u64 {
        self.container()["ports"]
            .as_array()
            .expect("the container declares its ports")
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("no container port named {name}"))["containerPort"]
            .as_u64()
            .expect("containerPort is a number")
    }

    /// A probe's or Service's port: a number, or a container port's name.
    fn resolve_port(&self, port: &Value) -> u64 {
        match port {
            Value::Number(n) => n.as_u64().expect("a port is a positive number"),
            Value::String(name) => self.container_port(name),
            other => panic!("{other} is not a port"),
        }
    }

    /// The container's HTTP port (the one named `http`).
    fn http_port(&self) -> u64 {
        self.container_port("http")
    }

    /// The container's environment, as the kubelet builds it: `envFrom`
    /// first, then `env` in order, each value's `$(NAME)` references
    /// expanded from the variables defined before it. What only the cluster
    /// knows (downward API, Secrets) gets a plausible value.
    fn env(&self) -> Vec<(String, String)> {
        let container = self.container();
        let mut env: Vec<(String, String)> = Vec::new();
        fn define(env: &mut Vec<(String, String)>, name: String, value: String) {
            assert!(
                !env.iter().any(|(n, _)| *n == name),
                "{name} is defined twice (envFrom and env, or twice in env): one silently wins"
            );
            env.push((name, value));
        }
        for source in container["envFrom"].as_array().into_iter().flatten() {
            let prefix = source["prefix"].as_str().unwrap_or("");
            let Some(name) = source["configMapRef"]["name"].as_str() else {
                panic!("envFrom supports configMapRef here, not {source}");
            };
            let data = &self.named("ConfigMap", name)["data"];
            for (key, value) in data.as_object().expect("ConfigMap data is a map") {
                let value = value.as_str().unwrap_or_else(|| {
                    panic!("ConfigMap {name}: {key} must be a string (quote it), not {value}")
                });
                define(&mut env, format!("{prefix}{key}"), value.to_owned());
            }
        }
        for var in container["env"].as_array().into_iter().flatten() {
            let name = var["name"]
                .as_str()
                .expect("env entry has a name")
                .to_owned();
            let value = if let Some(value) = var.get("value") {
                let text = value
                    .as_str()
                    .unwrap_or_else(|| panic!("{name}: a value must be a string (quote it)"));
                let defined: BTreeMap<String, String> = env.iter().cloned().collect();
                expand(text, &defined)
            } else {
                self.value_from(&name, &var["valueFrom"])
            };
            assert!(
                !value.contains("$("),
                "{name} = {value:?}: a $(NAME) reference to a variable not defined above it"
            );
            define(&mut env, name, value);
        }
        env
    }

    /// A plausible value for an `env[].valueFrom`.
    fn value_from(&self, name: &str, from: &Value) -> String {
        if let Some(path) = from["fieldRef"]["fieldPath"].as_str() {
            return match path {
                "metadata.name" => POD_NAME.to_owned(),
                "metadata.namespace" => "media".to_owned(),
                // With hostNetwork the pod's IP is the node's.
                "status.podIP" | "status.hostIP" => POD_IP.to_owned(),
                "spec.nodeName" => "node-a".to_owned(),
                other => panic!("{name}: no plausible value for fieldPath {other}"),
            };
        }
        if let (Some(secret), Some(key)) = (
            from["secretKeyRef"]["name"].as_str(),
            from["secretKeyRef"]["key"].as_str(),
        ) {
            // The example Secret documents every key the pods need.
            let example = self.named("Secret", secret);
            assert!(
                !example["stringData"][key].is_null() || !example["data"][key].is_null(),
                "{name}: Secret {secret} (secret.example.yaml) has no key {key}"
            );
            return format!("{key}-from-secret");
        }
        if let (Some(map), Some(key)) = (
            from["configMapKeyRef"]["name"].as_str(),
            from["configMapKeyRef"]["key"].as_str(),
        ) {
            return self.named("ConfigMap", map)["data"][key]
                .as_str()
                .unwrap_or_else(|| panic!("{name}: ConfigMap {map} has no string {key}"))
                .to_owned();
        }
        panic!("{name}: unsupported valueFrom {from}");
    }

    /// The environment, loaded by the server's config loader.
    fn load(&self) -> Loaded {
        let env = self.env();
        let loaded = Config::load(None, env.clone()).unwrap_or_else(|e| {
            panic!("the manifests' environment is not a valid config: {e}\n{env:#?}")
        });
        assert!(
            loaded.unknown_env.is_empty(),
            "HEARKEN_* variables in the manifests that are no config key: {:?}",
            loaded.unknown_env
        );
        loaded
    }
}

/// `$(NAME)` replaced by the value of `NAME` when it is defined (and `$$`
/// by `$`), as Kubernetes expands `env` values; an undefined reference is
/// left as it is.
fn expand(text: &str, defined: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('(')
            && let Some(end) = inner.find(')')
            && let Some(value) = defined.get(&inner[..end])
        {
            out.push_str(value);
            rest = &inner[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// A map of strings (labels, selectors, annotations).
fn string_map(value: &Value) -> BTreeMap<String, String> {
    value
        .as_object()
        .unwrap_or_else(|| panic!("{value} is not a map"))
        .iter()
        .map(|(k, v)| {
            let v = v
                .as_str()
                .unwrap_or_else(|| panic!("{k}: {v} must be a string (quote it)"));
            (k.clone(), v.to_owned())
        })
        .collect()
}

/// Whether every pair of `selector` is among `labels`.
fn selects(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// The loaded config as JSON, for keys read by name (`cluster.*`, `store.*`).
fn config_json(loaded: &Loaded) -> Value {
    serde_json::to_value(&loaded.config).expect("the config serializes")
}

#[test]
fn every_manifest_is_yaml_namespace_agnostic_and_applied() {
    let manifests = Manifests::read();
    for doc in &manifests.docs {
        let v = &doc.value;
        assert!(v["apiVersion"].is_string(), "{}: no apiVersion", doc.file);
        assert!(v["kind"].is_string(), "{}: no kind", doc.file);
        if v["kind"] == "Kustomization" {
            continue;
        }
        assert!(
            v["metadata"]["name"].is_string(),
            "{}: a {} without a name",
            doc.file,
            v["kind"]
        );
        assert!(
            v["metadata"]["namespace"].is_null(),
            "{}: {} names a namespace; the manifests go into any namespace",
            doc.file,
            v["metadata"]["name"]
        );
    }

    // The kustomization applies every file, except the example Secret
    // (its placeholder token must never be deployed).
    let kustomization = manifests.one("Kustomization");
    let resources: Vec<&str> = kustomization["resources"]
        .as_array()
        .expect("the kustomization lists its resources")
        .iter()
        .map(|r| r.as_str().expect("a resource is a path"))
        .collect();
    for resource in &resources {
        assert!(
            manifest_dir().join(resource).is_file(),
            "kustomization.yaml lists {resource}, which does not exist"
        );
    }
    let mut files: Vec<&str> = manifests.docs.iter().map(|d| d.file.as_str()).collect();
    files.dedup();
    for file in files.into_iter().filter(|f| *f != "kustomization.yaml") {
        let listed = resources.contains(&file);
        if file.contains(".example.") {
            assert!(!listed, "{file} is an example and must not be applied");
        } else {
            assert!(listed, "{file} is not in kustomization.yaml");
        }
    }
}

#[test]
fn every_hearken_variable_is_a_config_key() {
    let manifests = Manifests::read();
    let env = manifests.env();
    let names: Vec<&str> = env
        .iter()
        .map(|(n, _)| n.as_str())
        .filter(|n| n.starts_with(hearken::config::ENV_PREFIX))
        .collect();
    assert!(names.len() > 5, "few HEARKEN_* variables: {names:?}");
    let loaded = manifests.load();
    let config = &loaded.config;

    // Fixed values where the manifests need them, not the defaults.
    assert!(
        config.media.workers > 0,
        "set HEARKEN_MEDIA_WORKERS: 0 (one per core) cannot match the declared UDP ports"
    );
    assert_ne!(
        config.media.port_base, 0,
        "HEARKEN_MEDIA_PORT_BASE 0 picks random ports, which no manifest can publish"
    );
    assert!(
        config.http.listen.ip().is_unspecified(),
        "HEARKEN_HTTP_LISTEN must listen on all interfaces for probes and Services, not {}",
        config.http.listen
    );
    assert_eq!(
        config.media.advertised_ip.to_string(),
        POD_IP,
        "the media address is the pod's (node's) IP"
    );
    assert!(
        !config.accepts_development_token(),
        "the development token must not be accepted in a deployment"
    );

    // The fleet is on: NATS and PostgreSQL set, this pod named by its name.
    let json = config_json(&loaded);
    let cluster = &json["cluster"];
    assert!(
        cluster["nats_url"]
            .as_str()
            .is_some_and(|u| u.starts_with("nats://")),
        "cluster.nats_url: {}",
        cluster["nats_url"]
    );
    assert_eq!(cluster["node_id"], POD_NAME, "the node id is the pod name");
    assert!(
        json["store"]["postgres_url"]
            .as_str()
            .is_some_and(|u| u.starts_with("postgres://")),
        "store.postgres_url: {}",
        json["store"]["postgres_url"]
    );
    let postgres_url = env
        .iter()
        .find(|(n, _)| n == "HEARKEN_STORE_POSTGRES_URL")
        .map(|(_, v)| v.as_str())
        .unwrap_or("");
    assert!(
        postgres_url.contains(":postgres-password-from-secret@"),
        "the PostgreSQL URL carries the password from the Secret: {postgres_url}"
    );
    let advertised = cluster["advertised_url"]
        .as_str()
        .expect("cluster.advertised_url is a string");
    let url = reqwest::Url::parse(advertised)
        .unwrap_or_else(|e| panic!("cluster.advertised_url {advertised:?}: {e}"));
    assert_eq!(
        url.port_or_known_default().map(u64::from),
        Some(manifests.http_port()),
        "cluster.advertised_url {advertised} must name the pod's HTTP port"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_and_scrape_path_answer_on_a_running_server() {
    let manifests = Manifests::read();
    let container = manifests.container();
    let annotations =
        string_map(&manifests.statefulset()["spec"]["template"]["metadata"]["annotations"]);
    let metrics_path = annotations
        .get("prometheus.io/path")
        .expect("prometheus.io/path annotation")
        .clone();
    assert_eq!(metrics_path, "/metrics");

    let server = TestServer::start().await;
    let mut probed = Vec::new();
    for kind in ["livenessProbe", "readinessProbe", "startupProbe"] {
        let probe = &container[kind];
        if probe.is_null() {
            assert_ne!(kind, "livenessProbe", "no liveness probe");
            assert_ne!(kind, "readinessProbe", "no readiness probe");
            continue;
        }
        let get = &probe["httpGet"];
        assert!(
            get["scheme"].is_null() || get["scheme"] == "HTTP",
            "{kind}: the server speaks plain HTTP"
        );
        let path = get["path"]
            .as_str()
            .unwrap_or_else(|| panic!("{kind} is an httpGet with a path"));
        let response = server
            .client
            .get(server.url(path))
            .send()
            .await
            .expect("http");
        assert_eq!(response.status(), 200, "{kind} {path} on a healthy server");
        probed.push((kind, path.to_owned()));
    }
    // Liveness must not be the readiness check: a draining pod answers 503
    // on /readyz for up to the drain timeout and must not be restarted.
    let path_of = |kind: &str| probed.iter().find(|(k, _)| *k == kind).map(|(_, p)| p);
    assert_ne!(
        path_of("livenessProbe"),
        path_of("readinessProbe"),
        "liveness and readiness probe the same path"
    );

    let response = server
        .client
        .get(server.url(&metrics_path))
        .send()
        .await
        .expect("http");
    assert_eq!(response.status(), 200, "{metrics_path} without a token");
    let text = response.text().await.expect("text");
    assert!(
        text.contains("# TYPE hearken_"),
        "{metrics_path} is Prometheus text"
    );
    server.shutdown().await;
}

#[test]
fn ports_follow_the_config() {
    let manifests = Manifests::read();
    let loaded = manifests.load();
    let config = &loaded.config;
    let http = manifests.http_port();
    assert_eq!(
        http,
        u64::from(config.http.listen.port()),
        "the container's http port is HEARKEN_HTTP_LISTEN's"
    );

    let container = manifests.container();
    for kind in ["livenessProbe", "readinessProbe", "startupProbe"] {
        let probe = &container[kind];
        if !probe.is_null() {
            assert_eq!(
                manifests.resolve_port(&probe["httpGet"]["port"]),
                http,
                "{kind} probes the HTTP port"
            );
        }
    }

    let annotations =
        string_map(&manifests.statefulset()["spec"]["template"]["metadata"]["annotations"]);
    assert_eq!(
        annotations.get("prometheus.io/scrape").map(String::as_str),
        Some("true")
    );
    assert_eq!(
        annotations
            .get("prometheus.io/port")
            .and_then(|p| p.parse::<u64>().ok()),
        Some(http),
        "prometheus.io/port is the HTTP port"
    );

    // One UDP port per media worker, exactly port_base..port_base+workers.
    let base = u64::from(config.media.port_base);
    let workers = u64::try_from(config.worker_count()).expect("worker count fits");
    let expected: Vec<u64> = (base..base + workers).collect();
    let ports = container["ports"].as_array().expect("ports");
    let mut udp: Vec<u64> = ports
        .iter()
        .filter(|p| p["protocol"] == "UDP")
        .map(|p| p["containerPort"].as_u64().expect("containerPort"))
        .collect();
    udp.sort_unstable();
    assert_eq!(
        udp, expected,
        "UDP container ports vs HEARKEN_MEDIA_PORT_BASE + HEARKEN_MEDIA_WORKERS"
    );
    for port in ports {
        if let Some(host) = port["hostPort"].as_u64() {
            assert_eq!(Some(host), port["containerPort"].as_u64(), "{port}");
        }
    }

    for service in manifests.all("Service") {
        for port in service["spec"]["ports"].as_array().expect("service ports") {
            let target = if port["targetPort"].is_null() {
                &port["port"]
            } else {
                &port["targetPort"]
            };
            assert_eq!(
                manifests.resolve_port(target),
                http,
                "Service {} reaches the HTTP port",
                service["metadata"]["name"]
            );
        }
    }
}

#[test]
fn selectors_select_the_pods() {
    let manifests = Manifests::read();
    let labels = manifests.pod_labels();
    let sts = manifests.statefulset();
    assert!(
        selects(
            &string_map(&sts["spec"]["selector"]["matchLabels"]),
            &labels
        ),
        "the StatefulSet's selector matches its pod template"
    );

    let pdb = manifests.one("PodDisruptionBudget");
    assert!(
        pdb["spec"]["selector"]["matchExpressions"].is_null(),
        "the PDB selects by matchLabels"
    );
    assert!(
        selects(
            &string_map(&pdb["spec"]["selector"]["matchLabels"]),
            &labels
        ),
        "the PodDisruptionBudget selects the StatefulSet's pods"
    );
    assert!(
        pdb["spec"]["maxUnavailable"].is_number() || pdb["spec"]["minAvailable"].is_number(),
        "the PDB sets a budget"
    );

    for service in manifests.all("Service") {
        assert!(
            selects(&string_map(&service["spec"]["selector"]), &labels),
            "Service {} selects the pods",
            service["metadata"]["name"]
        );
    }
    let headless = sts["spec"]["serviceName"]
        .as_str()
        .expect("the StatefulSet names its Service");
    assert_eq!(
        manifests.named("Service", headless)["spec"]["clusterIP"],
        "None",
        "the StatefulSet's Service is headless"
    );
}

#[test]
fn the_grace_period_outlasts_the_drain() {
    let manifests = Manifests::read();
    let loaded = manifests.load();
    let drain = config_json(&loaded)["cluster"]["drain_timeout"]
        .as_u64()
        .expect("cluster.drain_timeout is a number of seconds");
    let grace = manifests.pod_spec()["terminationGracePeriodSeconds"]
        .as_u64()
        .expect("terminationGracePeriodSeconds is set");
    assert!(
        grace > drain,
        "terminationGracePeriodSeconds {grace} must exceed cluster.drain_timeout {drain}: \
         SIGTERM drains, and the kubelet kills the pod when the grace period ends"
    );
    assert!(
        grace - drain >= 60,
        "leave the drained node a minute or more to end its last calls and exit"
    );
    let container = manifests.container();
    assert!(
        container["lifecycle"]["preStop"]["httpGet"].is_null(),
        "no preStop drain request: SIGTERM drains (a preStop hook's time counts against the grace period)"
    );
}

#[test]
fn the_pod_runs_as_the_image_user_and_writes_only_its_volume() {
    let manifests = Manifests::read();
    // The uid the Dockerfile creates the `hearken` user with.
    let dockerfile =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Dockerfile"))
            .expect("Dockerfile");
    let uid: u64 = dockerfile
        .split("--uid")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("the Dockerfile creates its user with --uid N");
    let pod = &manifests.pod_spec()["securityContext"];
    let container = manifests.container();
    let security = &container["securityContext"];
    let run_as = security["runAsUser"]
        .as_u64()
        .or_else(|| pod["runAsUser"].as_u64());
    assert_eq!(run_as, Some(uid), "runAsUser is the image's user");
    assert!(
        security["runAsNonRoot"] == true || pod["runAsNonRoot"] == true,
        "runAsNonRoot"
    );
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["allowPrivilegeEscalation"], false);

    // The data directory is on the claim template's volume, writable.
    let loaded = manifests.load();
    let data_dir = &loaded.config.storage.data_dir;
    let mounts = container["volumeMounts"].as_array().expect("volumeMounts");
    let mount = mounts
        .iter()
        .find(|m| {
            m["mountPath"]
                .as_str()
                .is_some_and(|p| data_dir.starts_with(p))
        })
        .unwrap_or_else(|| panic!("no volume mounted at {}", data_dir.display()));
    assert_ne!(mount["readOnly"], true, "the data volume is writable");
    let templates = manifests.statefulset()["spec"]["volumeClaimTemplates"]
        .as_array()
        .expect("volumeClaimTemplates");
    assert!(
        templates
            .iter()
            .any(|t| t["metadata"]["name"] == mount["name"]),
        "{} is mounted from a volumeClaimTemplate (each pod keeps its recordings)",
        data_dir.display()
    );

    let requests = &container["resources"]["requests"];
    let limits = &container["resources"]["limits"];
    for key in ["cpu", "memory"] {
        assert!(!requests[key].is_null(), "resources.requests.{key}");
        assert!(!limits[key].is_null(), "resources.limits.{key}");
    }
}

#[test]
fn expand_follows_kubernetes() {
    let defined: BTreeMap<String, String> =
        [("A".to_owned(), "1".to_owned())].into_iter().collect();
    assert_eq!(expand("x$(A)y", &defined), "x1y");
    assert_eq!(expand("$(B)", &defined), "$(B)");
    assert_eq!(expand("$$(A)", &defined), "$(A)");
    assert_eq!(expand("$", &defined), "$");
}
