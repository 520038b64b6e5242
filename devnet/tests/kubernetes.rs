//! The Kubernetes manifests (`deploy/kubernetes`) as an operator would render them, checked:
//!
//! - every overlay renders with the command docs/kubernetes.md gives (`kubectl kustomize
//!   --load-restrictor LoadRestrictionsNone deploy/kubernetes/overlays/<overlay>`);
//! - the rendering passes `kubernetes-validate --strict` against the official schemas of a
//!   current Kubernetes; ServiceMonitor (a CRD of the Prometheus Operator, whose schema the tool
//!   does not ship) is the one kind it may skip, and is checked here field by field instead;
//! - checkov (a security linter) finds nothing, and every check it skips is skipped in the
//!   manifests with a reason;
//! - each relay container's command, args and environment, with its ConfigMap and placeholder
//!   files for its Secrets, give a config `multibridge config validate` accepts, whose every
//!   file lies on a mounted volume and whose store is on the writable store volume;
//! - its ports, probes, scrape annotations, Services, ServiceMonitors and NetworkPolicies agree
//!   with the config's `[http] listen`, its grace period outlasts the etcd lease.
//!
//! Each check is shown to fail on a manifest broken the way it guards against.
//!
//! The tools come from `.tools/python-k8s` (`bash .tools/setup.sh`).
#![allow(clippy::unwrap_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{Value, json};

/// The Kubernetes version the manifests are validated against (kubernetes-validate 1.37.0 ships
/// its schemas).
const KUBERNETES_VERSION: &str = "1.37.0";
/// The overlays an operator can deploy.
const OVERLAYS: [&str; 2] = ["devnet", "production"];
/// Kinds whose schema is a CRD kubernetes-validate does not ship (checked here instead).
const CRD_KINDS: [&str; 1] = ["ServiceMonitor"];
/// Seconds a relay may need after its lease TTL to finish what it is sending at SIGTERM.
const DRAIN_SECS: u64 = 10;

fn root() -> PathBuf {
    multibridge_devnet::harness::tools::workspace_root()
}

/// A command from `.tools/python-k8s` (its `bin/` first on PATH, its packages on PYTHONPATH).
fn tool(program: &str) -> Command {
    let dir = root().join(".tools/python-k8s");
    assert!(
        dir.join("bin/kubectl").is_file(),
        "{} has no kubectl: install the Kubernetes tools with `bash .tools/setup.sh`",
        dir.display()
    );
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs = vec![dir.join("bin")];
    dirs.extend(std::env::split_paths(&path));
    let mut command = Command::new(if program == "python3" {
        PathBuf::from("python3")
    } else {
        dir.join("bin").join(program)
    });
    command
        .env("PATH", std::env::join_paths(dirs).unwrap())
        .env("PYTHONPATH", &dir)
        .current_dir(root());
    command
}

fn run(command: &mut Command) -> Output {
    command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"))
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The overlay rendered exactly as docs/kubernetes.md says.
fn render(overlay: &str) -> String {
    let dir = format!("deploy/kubernetes/overlays/{overlay}");
    let output = run(tool("kubectl").args([
        "kustomize",
        "--load-restrictor",
        "LoadRestrictionsNone",
        &dir,
    ]));
    assert!(
        output.status.success(),
        "kubectl kustomize {dir}: {}",
        text(&output)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// The documents of a YAML stream as JSON (PyYAML from the tools' directory).
fn documents(yaml: &str) -> Vec<Value> {
    let mut child = tool("python3")
        .args([
            "-c",
            "import json, sys, yaml; json.dump([d for d in yaml.safe_load_all(sys.stdin) if d], sys.stdout)",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(yaml.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "YAML to JSON: {}", text(&output));
    serde_json::from_slice(&output.stdout).unwrap()
}

fn rendered(overlay: &str) -> Vec<Value> {
    documents(&render(overlay))
}

/// Write documents as one YAML stream (JSON is YAML) for the command-line tools.
fn write_stream(dir: &Path, name: &str, docs: &[Value]) -> PathBuf {
    let path = dir.join(name);
    let stream: Vec<String> = docs.iter().map(|d| d.to_string()).collect();
    std::fs::write(&path, stream.join("\n---\n")).unwrap();
    path
}

fn kind(doc: &Value) -> &str {
    doc["kind"].as_str().unwrap_or_default()
}

fn name(doc: &Value) -> &str {
    doc["metadata"]["name"].as_str().unwrap_or_default()
}

fn namespace(doc: &Value) -> &str {
    doc["metadata"]["namespace"].as_str().unwrap_or_default()
}

fn array(value: &Value) -> &[Value] {
    value.as_array().map(Vec::as_slice).unwrap_or_default()
}

// --- kubernetes-validate ---------------------------------------------------------------------

/// `kubernetes-validate --strict` on `docs`: Ok with the number of resources it passed, or its
/// complaints. Only [`CRD_KINDS`] may go unvalidated (their warning is expected).
fn kubernetes_validate(docs: &[Value]) -> Result<usize, String> {
    let dir = tempfile::tempdir().unwrap();
    let file = write_stream(dir.path(), "rendered.yaml", docs);
    let output = run(tool("kubernetes-validate").args([
        "--strict",
        "--kubernetes-version",
        KUBERNETES_VERSION,
        file.to_str().unwrap(),
    ]));
    let out = text(&output);
    let mut problems: Vec<&str> = Vec::new();
    let mut passed = 0;
    for line in out.lines() {
        if line.contains(" passed for resource ") {
            passed += 1;
        } else if line.starts_with("WARN")
            && CRD_KINDS.iter().any(|k| {
                line.contains(&format!(
                    "Couldn't find schema for kind {k} with api version"
                ))
            })
        {
        } else if !line.trim().is_empty() {
            problems.push(line);
        }
    }
    let native = docs
        .iter()
        .filter(|d| !CRD_KINDS.contains(&kind(d)))
        .count();
    if !output.status.success() || !problems.is_empty() || passed != native {
        return Err(format!(
            "kubernetes-validate (exit {:?}) passed {passed} of {native} resources: {}",
            output.status.code(),
            problems.join("\n")
        ));
    }
    Ok(passed)
}

#[test]
fn rendered_overlays_pass_kubernetes_validate_strict() {
    for overlay in OVERLAYS {
        let docs = rendered(overlay);
        let passed = kubernetes_validate(&docs).unwrap_or_else(|e| panic!("{overlay}: {e}"));
        eprintln!(
            "{overlay}: {passed} resources valid for Kubernetes {KUBERNETES_VERSION} (strict)"
        );
    }
}

#[test]
fn kubernetes_validate_refuses_an_unknown_field_and_a_wrong_type() {
    let docs = rendered("devnet");
    let sts = |docs: &mut Vec<Value>| -> usize {
        docs.iter()
            .position(|d| kind(d) == "StatefulSet" && name(d) == "multibridge-relay")
            .unwrap()
    };
    let mut unknown = docs.clone();
    let i = sts(&mut unknown);
    unknown[i]["spec"]["template"]["spec"]["containers"][0]["readinesProbe"]["httpGet"]["pth"] =
        json!("/readyz");
    assert!(
        kubernetes_validate(&unknown).is_err(),
        "unknown field passed"
    );
    let mut wrong = docs;
    let i = sts(&mut wrong);
    wrong[i]["spec"]["replicas"] = json!("two");
    assert!(kubernetes_validate(&wrong).is_err(), "wrong type passed");
}

// --- checkov ---------------------------------------------------------------------------------

/// checkov's findings on `docs`: Ok with the skipped checks (id, resource, reason), or what
/// failed; a skip without a reason is a failure.
fn checkov(docs: &[Value]) -> Result<Vec<(String, String, String)>, String> {
    let dir = tempfile::tempdir().unwrap();
    let file = write_stream(dir.path(), "rendered.yaml", docs);
    let output = run(tool("checkov").args([
        "--file",
        file.to_str().unwrap(),
        "--framework",
        "kubernetes",
        "--compact",
        "--skip-download",
        "--output",
        "json",
    ]));
    let report: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("checkov printed no JSON report ({e}): {}", text(&output)));
    let results = &report["results"];
    let mut problems: Vec<String> = array(&results["failed_checks"])
        .iter()
        .map(|c| {
            format!(
                "{} {} on {}",
                c["check_id"].as_str().unwrap_or("?"),
                c["check_name"].as_str().unwrap_or("?"),
                c["resource"].as_str().unwrap_or("?")
            )
        })
        .collect();
    if report["summary"]["parsing_errors"].as_u64() != Some(0) {
        problems.push(format!("parsing errors: {}", report["summary"]));
    }
    if report["summary"]["passed"].as_u64().unwrap_or(0) == 0 {
        problems.push(format!("nothing was checked: {}", report["summary"]));
    }
    let mut skipped = Vec::new();
    for c in array(&results["skipped_checks"]) {
        let id = c["check_id"].as_str().unwrap_or("?").to_owned();
        let resource = c["resource"].as_str().unwrap_or("?").to_owned();
        let reason = c["check_result"]["suppress_comment"]
            .as_str()
            .unwrap_or_default()
            .trim()
            .to_owned();
        if reason.len() < 20 || reason == "No comment provided" {
            problems.push(format!("{id} on {resource} is skipped without a reason"));
        }
        skipped.push((id, resource, reason));
    }
    if !problems.is_empty() || !output.status.success() {
        return Err(format!(
            "checkov (exit {:?}): {}",
            output.status.code(),
            problems.join("; ")
        ));
    }
    Ok(skipped)
}

#[test]
fn rendered_overlays_pass_checkov_with_every_skip_explained() {
    for overlay in OVERLAYS {
        let skipped =
            checkov(&rendered(overlay)).unwrap_or_else(|e| panic!("{overlay}: checkov: {e}"));
        for (id, resource, reason) in skipped {
            eprintln!("{overlay}: checkov skips {id} on {resource}: {reason}");
        }
    }
}

#[test]
fn checkov_fails_a_writable_root_filesystem_and_a_skip_without_reason() {
    let docs = rendered("devnet");
    let relay = |docs: &[Value]| {
        docs.iter()
            .position(|d| kind(d) == "StatefulSet" && name(d) == "multibridge-relay")
            .unwrap()
    };
    let mut writable = docs.clone();
    let i = relay(&writable);
    writable[i]["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnlyRootFilesystem"] =
        json!(false);
    let e = checkov(&writable).unwrap_err();
    assert!(e.contains("CKV_K8S_22"), "{e}");
    let mut unexplained = docs;
    let i = relay(&unexplained);
    unexplained[i]["metadata"]["annotations"]["checkov.io/skip1"] = json!("CKV_K8S_35");
    let e = checkov(&unexplained).unwrap_err();
    assert!(e.contains("without a reason"), "{e}");
}

// --- the relay containers against their config ----------------------------------------------

/// A Secret's key as the test fills it in (never a real secret): what the manifests reference
/// must be listed here.
fn placeholder(secret: &str, key: &str) -> String {
    match (secret, key) {
        ("multibridge-rpc", "main") => {
            r#"["https://main-1.rpc.invalid/k/placeholder","https://main-2.rpc.invalid"]"#.into()
        }
        ("multibridge-rpc", "service") => {
            r#"["https://service-1.rpc.invalid/k/placeholder","https://service-2.rpc.invalid"]"#
                .into()
        }
        ("multibridge-operator-key", "keystore.json") => "{}".into(),
        ("multibridge-operator-key" | "multibridge-etcd-client", "password") => {
            "placeholder-password".into()
        }
        ("multibridge-etcd-client", "ca.pem" | "client.pem" | "client.key") => {
            "placeholder PEM".into()
        }
        _ => panic!(
            "the manifests reference Secret {secret} key {key}: give it a placeholder in this test"
        ),
    }
}

/// One relay StatefulSet with everything its container needs, materialised in a sandbox.
struct Relay {
    /// `<namespace>/<name>`.
    id: String,
    /// The StatefulSet.
    sts: Value,
    /// The container running `multibridge`.
    container: Value,
    /// The config file in the sandbox.
    config_path: PathBuf,
    /// The config as the container sees it (its TOML, mount paths unchanged).
    config: toml::Table,
    /// The container's environment, resolved ($(VAR), fieldRef, Secret placeholders), with mount
    /// paths moved into the sandbox.
    env: Vec<(String, String)>,
    /// Problems found while materialising.
    problems: Vec<String>,
    _sandbox: tempfile::TempDir,
}

fn relay_statefulsets(docs: &[Value]) -> Vec<&Value> {
    let relays: Vec<&Value> = docs
        .iter()
        .filter(|d| {
            kind(d) == "StatefulSet"
                && array(&d["spec"]["template"]["spec"]["containers"])
                    .iter()
                    .any(|c| {
                        c["image"]
                            .as_str()
                            .unwrap_or_default()
                            .contains("multibridge")
                    })
        })
        .collect();
    assert!(!relays.is_empty(), "no relay StatefulSet rendered");
    relays
}

fn find<'a>(docs: &'a [Value], kind_: &str, ns: &str, name_: &str) -> Option<&'a Value> {
    docs.iter()
        .find(|d| kind(d) == kind_ && namespace(d) == ns && name(d) == name_)
}

/// Materialise `sts`'s relay container: volumes as sandbox directories, its ConfigMap's files,
/// placeholders for its Secret files and env, its config.
fn materialise(docs: &[Value], sts: &Value) -> Relay {
    let ns = namespace(sts).to_owned();
    let id = format!("{ns}/{}", name(sts));
    let pod = &sts["spec"]["template"]["spec"];
    let container = array(&pod["containers"])
        .iter()
        .find(|c| {
            c["image"]
                .as_str()
                .unwrap_or_default()
                .contains("multibridge")
        })
        .unwrap()
        .clone();
    let sandbox = tempfile::tempdir().unwrap();
    let inside = |path: &str| sandbox.path().join(path.trim_start_matches('/'));
    let mut problems = Vec::new();
    let claims: Vec<&str> = array(&sts["spec"]["volumeClaimTemplates"])
        .iter()
        .map(name)
        .collect();
    let mut mounts: Vec<String> = Vec::new();
    for mount in array(&container["volumeMounts"]) {
        let mount_path = mount["mountPath"].as_str().unwrap().to_owned();
        let volume_name = mount["name"].as_str().unwrap();
        let dir = inside(&mount_path);
        std::fs::create_dir_all(&dir).unwrap();
        mounts.push(mount_path.clone());
        if claims.contains(&volume_name) {
            continue;
        }
        let Some(volume) = array(&pod["volumes"])
            .iter()
            .find(|v| v["name"].as_str() == Some(volume_name))
        else {
            problems.push(format!("{id}: volumeMount {volume_name} names no volume"));
            continue;
        };
        if let Some(cm) = volume.get("configMap") {
            let cm_name = cm["name"].as_str().unwrap();
            let Some(map) = find(docs, "ConfigMap", &ns, cm_name) else {
                problems.push(format!("{id}: ConfigMap {cm_name} is not rendered"));
                continue;
            };
            let data = map["data"].as_object().cloned().unwrap_or_default();
            let items: Vec<(String, String)> = match cm.get("items") {
                Some(items) => array(items)
                    .iter()
                    .map(|i| {
                        (
                            i["key"].as_str().unwrap().to_owned(),
                            i["path"].as_str().unwrap().to_owned(),
                        )
                    })
                    .collect(),
                None => data.keys().map(|k| (k.clone(), k.clone())).collect(),
            };
            for (key, path) in items {
                match data.get(&key).and_then(Value::as_str) {
                    Some(content) => std::fs::write(dir.join(path), content).unwrap(),
                    None => problems.push(format!("{id}: ConfigMap {cm_name} has no key {key}")),
                }
            }
        } else if let Some(secret) = volume.get("secret") {
            let secret_name = secret["secretName"].as_str().unwrap();
            // Items are listed, so the files a config names can be checked against them.
            let Some(items) = secret.get("items") else {
                problems.push(format!(
                    "{id}: Secret volume {volume_name} lists no items (the files its config may name)"
                ));
                continue;
            };
            for item in array(items) {
                let key = item["key"].as_str().unwrap();
                let path = item["path"].as_str().unwrap();
                std::fs::write(dir.join(path), placeholder(secret_name, key)).unwrap();
            }
        } else if volume.get("emptyDir").is_none() {
            problems.push(format!(
                "{id}: volume {volume_name} is of an unexpected kind"
            ));
        }
    }

    // The image's entrypoint is the relay; a command would replace it.
    if let Some(command) = container.get("command")
        && command != &json!(["/usr/local/bin/multibridge"])
    {
        problems.push(format!(
            "{id}: command {command} is not the image's /usr/local/bin/multibridge"
        ));
    }
    let args: Vec<String> = array(&container["args"])
        .iter()
        .map(|a| a.as_str().unwrap().to_owned())
        .collect();
    if !args.iter().any(|a| a == "run") {
        problems.push(format!("{id}: args {args:?} do not run the relay"));
    }
    let config_in_container = args
        .iter()
        .position(|a| a == "--config")
        .and_then(|i| args.get(i + 1))
        .cloned()
        .unwrap_or_else(|| {
            problems.push(format!("{id}: args {args:?} give no --config"));
            String::new()
        });
    let config_path = inside(&config_in_container);
    let config_text = std::fs::read_to_string(&config_path).unwrap_or_else(|e| {
        problems.push(format!(
            "{id}: --config {config_in_container} is not a file of a mounted ConfigMap: {e}"
        ));
        String::new()
    });
    let config: toml::Table = config_text.parse().unwrap_or_else(|e| {
        problems.push(format!("{id}: {config_in_container} is not TOML: {e}"));
        toml::Table::new()
    });

    // Move every mount path the config names into the sandbox (longest first).
    let mut by_length = mounts.clone();
    by_length.sort_by_key(|m| std::cmp::Reverse(m.len()));
    let relocate = |s: &str| -> String {
        for m in &by_length {
            if s == m || s.starts_with(&format!("{m}/")) {
                return format!("{}{s}", sandbox.path().display());
            }
        }
        s.to_owned()
    };
    let mut relocated = config.clone();
    relocate_paths(&mut relocated, &relocate);
    std::fs::write(&config_path, toml::to_string(&relocated).unwrap()).unwrap();

    // Environment, as the kubelet resolves it.
    let pod_name = format!("{}-0", name(sts));
    let mut env: Vec<(String, String)> = Vec::new();
    for var in array(&container["env"]) {
        let var_name = var["name"].as_str().unwrap().to_owned();
        let value = if let Some(v) = var["value"].as_str() {
            expand(v, &env)
        } else if let Some(field) = var["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
            match field {
                "metadata.name" => pod_name.clone(),
                "metadata.namespace" => ns.clone(),
                other => panic!("{id}: fieldRef {other}: teach this test"),
            }
        } else if let Some(r) = var["valueFrom"].get("secretKeyRef") {
            placeholder(r["name"].as_str().unwrap(), r["key"].as_str().unwrap())
        } else {
            panic!("{id}: env {var_name}: teach this test its source");
        };
        env.push((var_name, value));
    }
    if !array(&container["envFrom"]).is_empty() {
        problems.push(format!(
            "{id}: envFrom is not checked by this test: name the variables"
        ));
    }
    let env = env
        .into_iter()
        .map(|(k, v)| {
            let v = relocate(&v);
            (k, v)
        })
        .collect();

    // Every file the config names lies on a mounted volume and exists there.
    for path in absolute_paths(&config) {
        if !mounts
            .iter()
            .any(|m| path.starts_with(&format!("{m}/")) || &path == m)
        {
            problems.push(format!(
                "{id}: the config names {path}, which is on no mounted volume (the root filesystem is read-only and holds no operator files)"
            ));
        }
    }
    Relay {
        id,
        sts: sts.clone(),
        container,
        config_path,
        config,
        env,
        problems,
        _sandbox: sandbox,
    }
}

/// `$(VAR)` references to variables defined earlier, as Kubernetes expands them.
fn expand(value: &str, env: &[(String, String)]) -> String {
    let mut out = value.to_owned();
    for (k, v) in env {
        out = out.replace(&format!("$({k})"), v);
    }
    out
}

fn relocate_paths(table: &mut toml::Table, relocate: &dyn Fn(&str) -> String) {
    fn walk(value: &mut toml::Value, relocate: &dyn Fn(&str) -> String) {
        match value {
            toml::Value::String(s) if s.starts_with('/') => *s = relocate(s),
            toml::Value::Array(items) => items.iter_mut().for_each(|v| walk(v, relocate)),
            toml::Value::Table(t) => t.iter_mut().for_each(|(_, v)| walk(v, relocate)),
            _ => {}
        }
    }
    table.iter_mut().for_each(|(_, v)| walk(v, relocate));
}

fn absolute_paths(table: &toml::Table) -> Vec<String> {
    fn walk(value: &toml::Value, out: &mut Vec<String>) {
        match value {
            toml::Value::String(s) if s.starts_with('/') => out.push(s.clone()),
            toml::Value::Array(items) => items.iter().for_each(|v| walk(v, out)),
            toml::Value::Table(t) => t.values().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    table.values().for_each(|v| walk(v, &mut out));
    out
}

/// `multibridge config validate` with the container's environment only (not the test's).
fn validate_config(relay: &Relay) -> Result<String, String> {
    let binary = multibridge_devnet::harness::tools::relay_binary().unwrap();
    let mut command = Command::new(binary);
    command
        .env_clear()
        .envs(relay.env.iter().cloned())
        .args(["config", "validate", "--config"])
        .arg(&relay.config_path);
    let output = run(&mut command);
    if output.status.success() {
        Ok(text(&output))
    } else {
        Err(format!(
            "{}: multibridge config validate: {}",
            relay.id,
            text(&output)
        ))
    }
}

/// A config value at `path` (dotted), after the container's `MULTIBRIDGE__` environment.
fn effective(relay: &Relay, path: &str) -> Option<toml::Value> {
    let var = format!("MULTIBRIDGE__{}", path.replace('.', "__").to_uppercase());
    if let Some((_, v)) = relay.env.iter().find(|(k, _)| *k == var) {
        return Some(
            v.parse::<toml::Value>()
                .unwrap_or_else(|_| toml::Value::String(v.clone())),
        );
    }
    let mut value: Option<&toml::Value> = None;
    let mut table = Some(&relay.config);
    for part in path.split('.') {
        value = table.and_then(|t| t.get(part));
        table = value.and_then(toml::Value::as_table);
    }
    value.cloned()
}

/// The container port `port` (a number or a port name) refers to.
fn resolve_port(container: &Value, port: &Value) -> Option<u64> {
    match port {
        Value::Number(n) => n.as_u64(),
        Value::String(name_) => array(&container["ports"])
            .iter()
            .find(|p| p["name"].as_str() == Some(name_))
            .and_then(|p| p["containerPort"].as_u64()),
        _ => None,
    }
}

fn selects(selector: &Value, labels: &Value) -> bool {
    selector
        .as_object()
        .is_some_and(|s| !s.is_empty() && s.iter().all(|(k, v)| labels.get(k) == Some(v)))
}

/// Whether ports, probes, scrape targets, Services, ServiceMonitors, NetworkPolicies, the
/// disruption budget and the grace period agree with the relay's config; every disagreement.
fn agreement(docs: &[Value], relay: &Relay) -> Result<(), Vec<String>> {
    let id = &relay.id;
    let mut problems = relay.problems.clone();
    let c = &relay.container;
    let pod = &relay.sts["spec"]["template"];
    let labels = &pod["metadata"]["labels"];
    let ns = namespace(&relay.sts);

    let listen = effective(relay, "http.listen")
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| "127.0.0.1:9464".to_owned());
    let listen: std::net::SocketAddr = match listen.parse() {
        Ok(a) => a,
        Err(e) => return Err(vec![format!("{id}: http.listen {listen}: {e}")]),
    };
    let port = u64::from(listen.port());
    if !listen.ip().is_unspecified() {
        problems.push(format!(
            "{id}: http.listen {listen} is not reachable at the pod's IP (probes, Prometheus): listen on 0.0.0.0"
        ));
    }
    if !array(&c["ports"])
        .iter()
        .any(|p| p["containerPort"].as_u64() == Some(port))
    {
        problems.push(format!("{id}: no containerPort {port} (http.listen)"));
    }
    for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        let get = &c[probe]["httpGet"];
        if get["path"].as_str() != Some(path) {
            problems.push(format!("{id}: {probe} path {} is not {path}", get["path"]));
        }
        if resolve_port(c, &get["port"]) != Some(port) {
            problems.push(format!(
                "{id}: {probe} port {} is not http.listen's {port}",
                get["port"]
            ));
        }
    }
    let annotations = &pod["metadata"]["annotations"];
    if annotations["prometheus.io/scrape"].as_str() != Some("true")
        || annotations["prometheus.io/port"].as_str() != Some(&port.to_string())
        || annotations["prometheus.io/path"].as_str() != Some("/metrics")
    {
        problems.push(format!(
            "{id}: scrape annotations {annotations} do not say port {port}, path /metrics"
        ));
    }
    if labels["multibridge/operator"]
        .as_str()
        .is_none_or(str::is_empty)
    {
        problems.push(format!(
            "{id}: pods have no multibridge/operator label (the alerts' `operator`)"
        ));
    }

    // Services selecting the relay pods route to the listen port.
    let services: Vec<&Value> = docs
        .iter()
        .filter(|d| {
            kind(d) == "Service" && namespace(d) == ns && selects(&d["spec"]["selector"], labels)
        })
        .collect();
    if !services.iter().any(|s| {
        name(s)
            == relay.sts["spec"]["serviceName"]
                .as_str()
                .unwrap_or_default()
    }) {
        problems.push(format!(
            "{id}: its serviceName names no Service selecting it"
        ));
    }
    for s in &services {
        for p in array(&s["spec"]["ports"]) {
            let target = p.get("targetPort").unwrap_or(&p["port"]);
            if resolve_port(c, target) != Some(port) {
                problems.push(format!(
                    "{id}: Service {} port {} targets {target}, not {port}",
                    name(s),
                    p["name"]
                ));
            }
        }
    }
    // ServiceMonitors (a CRD kubernetes-validate cannot check): their fields, one by one.
    for sm in docs
        .iter()
        .filter(|d| kind(d) == "ServiceMonitor" && namespace(d) == ns)
    {
        if sm["apiVersion"].as_str() != Some("monitoring.coreos.com/v1") {
            problems.push(format!(
                "{id}: ServiceMonitor {} apiVersion {}",
                name(sm),
                sm["apiVersion"]
            ));
        }
        let Some(service) = services.iter().find(|s| {
            selects(
                &sm["spec"]["selector"]["matchLabels"],
                &s["metadata"]["labels"],
            )
        }) else {
            problems.push(format!(
                "{id}: ServiceMonitor {} selects no Service of the relays",
                name(sm)
            ));
            continue;
        };
        let endpoints = array(&sm["spec"]["endpoints"]);
        if endpoints.is_empty() {
            problems.push(format!(
                "{id}: ServiceMonitor {} has no endpoints",
                name(sm)
            ));
        }
        for e in endpoints {
            let service_port = array(&service["spec"]["ports"])
                .iter()
                .find(|p| p["name"] == e["port"]);
            let target =
                service_port.map(|p| resolve_port(c, p.get("targetPort").unwrap_or(&p["port"])));
            if target != Some(Some(port)) || e["path"].as_str() != Some("/metrics") {
                problems.push(format!(
                    "{id}: ServiceMonitor {} endpoint port {} path {} is not {port} /metrics",
                    name(sm),
                    e["port"],
                    e["path"]
                ));
            }
            let operator_label = array(&e["relabelings"]).iter().any(|r| {
                r["targetLabel"].as_str() == Some("operator")
                    && r["sourceLabels"]
                        == json!(["__meta_kubernetes_pod_label_multibridge_operator"])
            });
            if !operator_label {
                problems.push(format!(
                    "{id}: ServiceMonitor {} gives targets no operator label",
                    name(sm)
                ));
            }
        }
    }
    // The plain-Prometheus scrape job, where the monitoring component is rendered.
    if let Some(scrape) = find(docs, "ConfigMap", ns, "multibridge-prometheus-scrape") {
        let job = scrape["data"]["scrape.yml"].as_str().unwrap_or_default();
        for needle in [
            "__meta_kubernetes_pod_annotation_prometheus_io_port",
            "__meta_kubernetes_pod_annotation_prometheus_io_path",
            "__meta_kubernetes_pod_label_multibridge_operator]\n      target_label: operator",
        ] {
            if !job.contains(needle) {
                problems.push(format!("{id}: scrape.yml does not use {needle}"));
            }
        }
    }
    // NetworkPolicies selecting the pods let Prometheus in on the listen port.
    for np in docs.iter().filter(|d| {
        kind(d) == "NetworkPolicy"
            && namespace(d) == ns
            && selects(&d["spec"]["podSelector"]["matchLabels"], labels)
    }) {
        let open = array(&np["spec"]["ingress"]).iter().any(|rule| {
            array(&rule["ports"])
                .iter()
                .any(|p| resolve_port(c, &p["port"]) == Some(port))
        });
        if !open {
            problems.push(format!(
                "{id}: NetworkPolicy {} admits nobody on {port}",
                name(np)
            ));
        }
    }
    // A disruption budget, more than one replica, and a grace period beyond the lease.
    let replicas = relay.sts["spec"]["replicas"].as_u64().unwrap_or(1);
    if replicas < 2 {
        problems.push(format!("{id}: {replicas} replica(s): no standby"));
    }
    if !docs.iter().any(|d| {
        kind(d) == "PodDisruptionBudget"
            && namespace(d) == ns
            && selects(&d["spec"]["selector"]["matchLabels"], labels)
    }) {
        problems.push(format!("{id}: no PodDisruptionBudget selects it"));
    }
    if effective(relay, "etcd").is_some() {
        let ttl = effective(relay, "etcd.lease_ttl_secs")
            .and_then(|v| v.as_integer())
            .unwrap_or(3) as u64;
        let grace = pod["spec"]["terminationGracePeriodSeconds"]
            .as_u64()
            .unwrap_or(30);
        if grace <= ttl + DRAIN_SECS {
            problems.push(format!(
                "{id}: terminationGracePeriodSeconds {grace} is not above lease_ttl_secs {ttl} + {DRAIN_SECS} s of drain"
            ));
        }
        if effective(relay, "etcd.replica").is_none() {
            problems.push(format!(
                "{id}: replicas have no etcd.replica name of their own"
            ));
        }
    }
    // The store is on the replica's own writable volume (the root filesystem is read-only).
    let store = effective(relay, "store.path")
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    let claims: Vec<&str> = array(&relay.sts["spec"]["volumeClaimTemplates"])
        .iter()
        .map(name)
        .collect();
    let on_claim = array(&c["volumeMounts"]).iter().any(|m| {
        claims.contains(&m["name"].as_str().unwrap_or_default())
            && m["readOnly"].as_bool() != Some(true)
            && store.starts_with(&format!("{}/", m["mountPath"].as_str().unwrap_or("?")))
    });
    if !on_claim {
        problems.push(format!(
            "{id}: store.path {store} is not on a writable volumeClaimTemplate mount"
        ));
    }
    let security = &c["securityContext"];
    if security["readOnlyRootFilesystem"] != json!(true)
        || security["allowPrivilegeEscalation"] != json!(false)
        || security["capabilities"]["drop"] != json!(["ALL"])
        || pod["spec"]["securityContext"]["runAsNonRoot"] != json!(true)
        || pod["spec"]["automountServiceAccountToken"] != json!(false)
    {
        problems.push(format!(
            "{id}: not read-only, non-root, without capabilities and API token"
        ));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

#[test]
fn relay_containers_give_a_valid_config_that_agrees_with_ports_probes_and_scraping() {
    for overlay in OVERLAYS {
        let docs = rendered(overlay);
        for sts in relay_statefulsets(&docs) {
            let relay = materialise(&docs, sts);
            let ok = validate_config(&relay).unwrap_or_else(|e| panic!("{overlay}: {e}"));
            eprintln!("{overlay}: {}: {}", relay.id, ok.trim());
            if let Err(problems) = agreement(&docs, &relay) {
                panic!("{overlay}: {}", problems.join("\n"));
            }
        }
    }
}

#[test]
fn production_places_one_relay_per_zone() {
    let docs = rendered("production");
    for sts in relay_statefulsets(&docs) {
        let pod = &sts["spec"]["template"]["spec"];
        let required =
            &pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"];
        assert!(
            array(required)
                .iter()
                .any(|t| t["topologyKey"] == json!("topology.kubernetes.io/zone")),
            "{}: no required zone anti-affinity",
            name(sts)
        );
        assert!(
            array(&pod["topologySpreadConstraints"]).iter().any(|t| {
                t["topologyKey"] == json!("topology.kubernetes.io/zone")
                    && t["whenUnsatisfiable"] == json!("DoNotSchedule")
            }),
            "{}: replicas not spread over zones",
            name(sts)
        );
        assert!(sts["spec"]["replicas"].as_u64() >= Some(3));
    }
}

/// Each kind of disagreement is caught: the checks above can fail.
#[test]
fn broken_manifests_are_caught() {
    let docs = rendered("production");
    let operator_b = relay_statefulsets(&docs)
        .into_iter()
        .find(|s| namespace(s) == "multibridge-operator-b")
        .unwrap()
        .clone();
    let index = docs.iter().position(|d| *d == operator_b).unwrap();
    fn container(docs: &mut [Value], i: usize) -> &mut Value {
        &mut docs[i]["spec"]["template"]["spec"]["containers"][0]
    }
    type Break = fn(&mut [Value], usize);
    let cases: [(&str, Break, &str); 9] = [
        (
            "containerPort",
            |d, i| container(d, i)["ports"][0]["containerPort"] = json!(9465),
            "no containerPort 9464",
        ),
        (
            "readiness path",
            |d, i| container(d, i)["readinessProbe"]["httpGet"]["path"] = json!("/healthz"),
            "readinessProbe path",
        ),
        (
            "liveness port",
            |d, i| container(d, i)["livenessProbe"]["httpGet"]["port"] = json!(8080),
            "livenessProbe port",
        ),
        (
            "scrape annotation",
            |d, i| {
                d[i]["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"] =
                    json!("9100")
            },
            "scrape annotations",
        ),
        (
            "grace period",
            |d, i| d[i]["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = json!(10),
            "terminationGracePeriodSeconds",
        ),
        (
            "listen on loopback",
            |d, i| {
                container(d, i)["env"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"name": "MULTIBRIDGE__HTTP__LISTEN", "value": "127.0.0.1:9464"}))
            },
            "not reachable at the pod's IP",
        ),
        (
            "secret file not mounted",
            |d, i| {
                d[i]["spec"]["template"]["spec"]["volumes"]
                    .as_array_mut()
                    .unwrap()
                    .retain(|v| v["name"] != json!("etcd-client"));
                container(d, i)["volumeMounts"]
                    .as_array_mut()
                    .unwrap()
                    .retain(|m| m["name"] != json!("etcd-client"));
            },
            "on no mounted volume",
        ),
        (
            "store on the root filesystem",
            |d, i| {
                container(d, i)["env"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"name": "MULTIBRIDGE__STORE__PATH", "value": "/tmp/store.sqlite"}))
            },
            "not on a writable volumeClaimTemplate mount",
        ),
        (
            "service target port",
            |d, _| {
                let service = d
                    .iter_mut()
                    .find(|d| {
                        kind(d) == "Service"
                            && namespace(d) == "multibridge-operator-b"
                            && name(d) == "multibridge-relay"
                    })
                    .unwrap();
                service["spec"]["ports"][0]["targetPort"] = json!(9100);
            },
            "targets",
        ),
    ];
    for (what, break_it, expect) in cases {
        let mut broken = docs.clone();
        break_it(&mut broken, index);
        let relay = materialise(&broken, &broken[index]);
        let problems = agreement(&broken, &relay).expect_err(what).join("\n");
        assert!(problems.contains(expect), "{what}: {problems}");
    }

    // The config check itself: without the RPC Secret's variable the config is incomplete.
    let mut broken = docs;
    broken[index]["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array_mut()
        .unwrap()
        .retain(|v| v["name"] != json!("MULTIBRIDGE__CHAINS__MAIN__RPC_URLS"));
    let relay = materialise(&broken, &broken[index]);
    let e = validate_config(&relay).unwrap_err();
    assert!(e.contains("rpc_urls"), "{e}");
}

#[test]
fn monitoring_configmaps_are_the_repository_files() {
    let docs = rendered("production");
    for (map, key, file) in [
        (
            "multibridge-alert-rules",
            "multibridge-alerts.yml",
            "monitoring/prometheus/alerts.yml",
        ),
        (
            "multibridge-grafana-dashboard",
            "multibridge.json",
            "monitoring/grafana/multibridge.json",
        ),
    ] {
        let data = find(&docs, "ConfigMap", "multibridge-operator-a", map).unwrap()["data"][key]
            .as_str()
            .unwrap()
            .to_owned();
        let file = std::fs::read_to_string(root().join(file)).unwrap();
        assert_eq!(data, file, "{map} differs from {key}");
    }
    let mut names: BTreeMap<&str, usize> = BTreeMap::new();
    for d in &docs {
        *names.entry(namespace(d)).or_default() += 1;
    }
    assert_eq!(
        names.keys().copied().collect::<Vec<_>>(),
        ["", "multibridge-operator-a", "multibridge-operator-b"],
        "two operators (and their Namespaces)"
    );
}
