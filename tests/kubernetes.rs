//! The Kubernetes example (`packaging/kubernetes/`), checked without a cluster:
//!
//! * every shipped manifest, the kustomize output of the example and of its overlay, and the
//!   Secrets the overlay's `create-secrets` makes validate strictly against the current Kubernetes
//!   schemas (`kubectl kustomize`, `kubernetes-validate --strict`; `scripts/deps.sh` installs them);
//! * a **model** of Kubernetes' documented eviction rule (not a cluster) says, for every readiness
//!   combination of 3 and 5 replicas, that the shipped readiness probe and disruption budget never
//!   block a drain and never let every standby go at once, and that a leader-only probe would;
//! * the pod spec is hardened, and its termination grace covers `--grace` and the revoke;
//! * the overlay's certificates work: a real etcd with client-certificate authentication accepts a
//!   replica that presents the application's certificate.
//!
//! Without kubectl or kubernetes-validate the tests that need them print a loud SKIPPED line,
//! except under `CI=true`, where a missing tool is a failure.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::support::etcd::Options;
use crate::support::{wait_for, EtcdCluster, Replica};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn k8s(rel: &str) -> PathBuf {
    Path::new(ROOT).join("packaging/kubernetes").join(rel)
}

/// Every document of a YAML stream, as JSON values.
fn parse_yaml(text: &str) -> Vec<Value> {
    serde_norway::Deserializer::from_str(text)
        .map(|doc| serde::Deserialize::deserialize(doc).expect("valid YAML"))
        .filter(|v: &Value| !v.is_null())
        .collect()
}

fn read_manifests(rel: &str) -> Vec<Value> {
    let path = k8s(rel);
    parse_yaml(&std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}")))
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind}/{name}"))
}

// ---------------------------------------------------------------------------------------------
// A model of Kubernetes' eviction rule. Sources: the PodDisruptionBudget API reference and
// "Specifying a Disruption Budget for your Application" (kubernetes.io):
//
//   disruptionsAllowed = max(0, currentHealthy - desiredHealthy)
//   currentHealthy     = selected pods that are Ready (and not being deleted)
//   desiredHealthy     = expectedPods - maxUnavailable   (expectedPods: the controller's scale;
//                        a percentage rounds up), or minAvailable (an integer; a percentage of the
//                        scale, rounded up)
//
// An eviction of a Ready pod is allowed while disruptionsAllowed >= 1 (and uses one up). A
// Running pod that is not Ready may be evicted: always under unhealthyPodEvictionPolicy
// AlwaysAllow; under IfHealthyBudget (the default) only while currentHealthy >= desiredHealthy.
// This is a model of that rule over pod readiness, not a cluster.
// ---------------------------------------------------------------------------------------------

/// The fields of a PodDisruptionBudget's spec that the rule reads.
#[derive(Debug, Clone, PartialEq)]
struct Budget {
    max_unavailable: Option<Value>,
    min_available: Option<Value>,
    always_allow_unhealthy: bool,
}

impl Budget {
    fn from_manifest(pdb: &Value) -> Budget {
        let spec = &pdb["spec"];
        let policy = spec["unhealthyPodEvictionPolicy"]
            .as_str()
            .unwrap_or("IfHealthyBudget");
        assert!(
            matches!(policy, "IfHealthyBudget" | "AlwaysAllow"),
            "{policy}"
        );
        Budget {
            max_unavailable: spec.get("maxUnavailable").cloned(),
            min_available: spec.get("minAvailable").cloned(),
            always_allow_unhealthy: policy == "AlwaysAllow",
        }
    }

    /// desiredHealthy for a controller of `scale` replicas.
    fn desired_healthy(&self, scale: u32) -> u32 {
        let scaled = |v: &Value| -> u32 {
            match v {
                Value::Number(n) => n.as_u64().expect("a count") as u32,
                Value::String(s) => {
                    let pct: u32 = s.strip_suffix('%').expect("N%").parse().expect("N%");
                    (scale * pct).div_ceil(100)
                }
                other => panic!("not an int or a percentage: {other}"),
            }
        };
        match (&self.max_unavailable, &self.min_available) {
            (Some(m), None) => scale.saturating_sub(scaled(m)),
            (None, Some(Value::Number(n))) => n.as_u64().expect("a count") as u32,
            (None, Some(m)) => scaled(m),
            other => panic!("a budget sets exactly one of maxUnavailable, minAvailable: {other:?}"),
        }
    }
}

/// One pod as the rule sees it: Ready or not. (Pods being deleted are gone from the list.)
#[derive(Debug, Clone, Copy, PartialEq)]
struct PodState {
    ready: bool,
}

/// May `pods[target]` be evicted now?
fn eviction_allowed(budget: &Budget, scale: u32, pods: &[PodState], target: usize) -> bool {
    let current_healthy = pods.iter().filter(|p| p.ready).count() as u32;
    let desired_healthy = budget.desired_healthy(scale);
    let disruptions_allowed = current_healthy.saturating_sub(desired_healthy);
    if pods[target].ready {
        disruptions_allowed >= 1
    } else {
        budget.always_allow_unhealthy || current_healthy >= desired_healthy
    }
}

/// What a replica is, as far as the probes can tell.
#[derive(Debug, Clone, Copy, PartialEq)]
struct ReplicaState {
    /// Its etcd session is fresh (a lease kept alive, a key in the queue): it can take over.
    fresh: bool,
    leader: bool,
}

/// The readiness a probe on `path` gives, from what the endpoints answer (src/report/http.rs):
/// /healthz: 200 while the session is fresh; /leader: 200 only while leading with a fresh lease.
fn ready(path: &str, r: ReplicaState) -> bool {
    match path {
        "/healthz" => r.fresh,
        "/leader" => r.leader && r.fresh,
        other => panic!("no model of a readiness probe on {other}"),
    }
}

/// Every state `n` replicas can be in: each session fresh or not, and at most one leader, which
/// holds a fresh lease.
fn reachable_states(n: usize) -> Vec<Vec<ReplicaState>> {
    let mut out = Vec::new();
    for fresh_mask in 0u32..(1 << n) {
        let fresh = |i: usize| fresh_mask & (1 << i) != 0;
        let leaders = std::iter::once(None).chain((0..n).filter(|&i| fresh(i)).map(Some));
        for leader in leaders {
            out.push(
                (0..n)
                    .map(|i| ReplicaState {
                        fresh: fresh(i),
                        leader: leader == Some(i),
                    })
                    .collect(),
            );
        }
    }
    out
}

/// What the rule does with a probe and a budget, over every reachable state of `n` replicas.
#[derive(Debug, PartialEq)]
struct Verdict {
    /// With every replica able to take over, any one pod may be evicted, the leader's included.
    drains_proceed: bool,
    /// A replica that cannot take over can be evicted at once (a drain never waits on it).
    useless_pods_go: bool,
    /// No sequence of evictions (their replacements not Ready yet) leaves fewer than n - 1
    /// replicas that can take over: a standby always remains.
    standbys_never_all_go: bool,
}

fn verdict(path: &str, budget: &Budget, n: usize) -> Verdict {
    let scale = n as u32;
    let states = reachable_states(n);
    let pods_of = |s: &[ReplicaState]| -> Vec<PodState> {
        s.iter()
            .map(|&r| PodState {
                ready: ready(path, r),
            })
            .collect()
    };

    let drains_proceed = states
        .iter()
        .filter(|s| s.iter().all(|r| r.fresh) && s.iter().any(|r| r.leader))
        .all(|s| (0..n).all(|i| eviction_allowed(budget, scale, &pods_of(s), i)));

    let useless_pods_go = states.iter().all(|s| {
        (0..n)
            .filter(|&i| !s[i].fresh)
            .all(|i| eviction_allowed(budget, scale, &pods_of(s), i))
    });

    // From every state where all can take over, evict greedily whatever the rule allows, a pod
    // that can take over first (the worst case), without any replacement becoming Ready: count
    // how many that can take over are left. Evicted pods are replaced by pods not Ready yet.
    let standbys_never_all_go = states
        .iter()
        .filter(|s| s.iter().all(|r| r.fresh))
        .all(|start| {
            let mut s: Vec<ReplicaState> = start.clone();
            loop {
                let pods = pods_of(&s);
                let Some(victim) =
                    (0..n).find(|&i| s[i].fresh && eviction_allowed(budget, scale, &pods, i))
                else {
                    break;
                };
                // The pod goes (a leader hands over to the next that can take over) and the
                // Deployment's replacement starts, not Ready yet.
                let was_leader = s[victim].leader;
                s[victim] = ReplicaState {
                    fresh: false,
                    leader: false,
                };
                if was_leader {
                    if let Some(next) = s.iter_mut().find(|r| r.fresh) {
                        next.leader = true;
                    }
                }
                if s.iter().filter(|r| r.fresh).count() < n - 1 {
                    return false;
                }
            }
            true
        });

    Verdict {
        drains_proceed,
        useless_pods_go,
        standbys_never_all_go,
    }
}

fn shipped() -> (u32, String, Budget) {
    let app = read_manifests("base/deployment.yaml");
    let deployment = find(&app, "Deployment", "myapp");
    let replicas = deployment["spec"]["replicas"].as_u64().unwrap() as u32;
    let path = deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]
        ["path"]
        .as_str()
        .unwrap()
        .to_owned();
    let budget = Budget::from_manifest(find(
        &read_manifests("base/pdb.yaml"),
        "PodDisruptionBudget",
        "myapp",
    ));
    (replicas, path, budget)
}

#[test]
fn eviction_rule_model_shipped_probe_and_budget_never_block_a_drain() {
    let (replicas, path, budget) = shipped();
    assert_eq!(replicas, 3);
    let old_budget = Budget {
        max_unavailable: Some(1.into()),
        min_available: None,
        always_allow_unhealthy: false,
    };
    let min_one = Budget {
        max_unavailable: None,
        min_available: Some(1.into()),
        always_allow_unhealthy: false,
    };
    let all_good = Verdict {
        drains_proceed: true,
        useless_pods_go: true,
        standbys_never_all_go: true,
    };
    for n in [3, 5] {
        assert_eq!(
            reachable_states(n).len(),
            (n + 2) << (n - 1),
            "2^n freshness × leader choices"
        );
        // The shipped pair, at 3 replicas and scaled to 5.
        assert_eq!(
            verdict(&path, &budget, n),
            all_good,
            "shipped, {n} replicas"
        );
        // The oracle: what the other pairs do, so the model is seen to tell them apart.
        #[rustfmt::skip]
        let table: [(&str, &Budget, Verdict); 4] = [
            // the pair shipped before: readiness on /leader, maxUnavailable 1: every drain blocks
            ("/leader", &old_budget, Verdict { drains_proceed: false, useless_pods_go: false, standbys_never_all_go: true }),
            // /leader with AlwaysAllow: the leader's node still never drains, and every standby
            // (not Ready) goes at once
            ("/leader", &budget, Verdict { drains_proceed: false, useless_pods_go: true, standbys_never_all_go: false }),
            // /healthz with the default policy: a pod that cannot reach etcd holds a drain while
            // another pod is away
            ("/healthz", &old_budget, Verdict { drains_proceed: true, useless_pods_go: false, standbys_never_all_go: true }),
            // minAvailable 1 paces nothing: all but one may go
            ("/healthz", &min_one, Verdict { drains_proceed: true, useless_pods_go: false, standbys_never_all_go: false }),
        ];
        for (probe, b, want) in table {
            assert_eq!(
                verdict(probe, b, n),
                want,
                "{probe} with {b:?}, {n} replicas"
            );
        }
    }
}

#[test]
fn eviction_rule_model_etcd_budget_keeps_the_quorum() {
    let docs = read_manifests("base/etcd.yaml");
    let members = find(&docs, "StatefulSet", "etcd")["spec"]["replicas"]
        .as_u64()
        .unwrap() as usize;
    let budget = Budget::from_manifest(find(&docs, "PodDisruptionBudget", "etcd"));
    for n in [members, 5] {
        let quorum = n / 2 + 1;
        for ready_mask in 0u32..(1 << n) {
            let pods: Vec<PodState> = (0..n)
                .map(|i| PodState {
                    ready: ready_mask & (1 << i) != 0,
                })
                .collect();
            let ready = pods.iter().filter(|p| p.ready).count();
            for i in 0..n {
                if pods[i].ready && eviction_allowed(&budget, n as u32, &pods, i) {
                    assert!(
                        ready > quorum,
                        "{n} members, {ready} ready: evicting a ready one leaves less than a quorum"
                    );
                }
            }
            if ready == n {
                assert!(
                    (0..n).all(|i| eviction_allowed(&budget, n as u32, &pods, i)),
                    "a healthy cluster of {n} drains one member at a time"
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The pod spec.
// ---------------------------------------------------------------------------------------------

/// `REVOKE_ON_EXIT` (src/leadership/mod.rs): how long a replica on its way out waits for the revoke.
const REVOKE_ON_EXIT_SECS: u64 = 1;

fn seconds(text: &str) -> u64 {
    text.strip_suffix('s')
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("whole seconds: {text}"))
}

#[test]
fn pods_are_hardened_and_the_termination_grace_covers_grace_and_revoke() {
    let app = read_manifests("base/deployment.yaml");
    let etcd = read_manifests("base/etcd.yaml");
    let config = find(&app, "ConfigMap", "myapp-singleton");
    for pod in [
        &find(&app, "Deployment", "myapp")["spec"]["template"]["spec"],
        &find(&etcd, "StatefulSet", "etcd")["spec"]["template"]["spec"],
    ] {
        let sc = &pod["securityContext"];
        assert_eq!(sc["runAsNonRoot"], true);
        assert!(sc["runAsUser"].as_u64().unwrap() > 0);
        assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault");
        assert_eq!(pod["automountServiceAccountToken"], false);
        let spread = pod["topologySpreadConstraints"].as_array().unwrap();
        assert!(spread
            .iter()
            .any(|c| c["topologyKey"] == "kubernetes.io/hostname"
                && c["whenUnsatisfiable"] == "DoNotSchedule"
                && c["maxSkew"] == 1));
        for c in pod["containers"].as_array().unwrap() {
            let sc = &c["securityContext"];
            assert_eq!(sc["allowPrivilegeEscalation"], false, "{}", c["name"]);
            assert_eq!(sc["readOnlyRootFilesystem"], true, "{}", c["name"]);
            assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]));
            assert!(c["resources"]["requests"]["cpu"].is_string());
            assert!(c["resources"]["requests"]["memory"].is_string());
            assert!(c["resources"]["limits"]["memory"].is_string());
            assert!(c["readinessProbe"].is_object() && c["livenessProbe"].is_object());
        }
    }
    // The image runs as the UID the pod asks for.
    let uid = find(&app, "Deployment", "myapp")["spec"]["template"]["spec"]["securityContext"]
        ["runAsUser"]
        .as_u64()
        .unwrap();
    let dockerfile = std::fs::read_to_string(Path::new(ROOT).join("packaging/Dockerfile")).unwrap();
    assert!(
        dockerfile.contains(&format!("\nUSER {uid}:{uid}\n")),
        "packaging/Dockerfile runs as {uid}"
    );

    // SIGTERM: the child's tree is gone within --grace, the revoke takes at most REVOKE_ON_EXIT;
    // the kubelet must not SIGKILL before both are done (2 s more for the rest of the exit).
    let grace = seconds(config["data"]["SINGLETON_EXEC_GRACE"].as_str().unwrap());
    let termination = find(&app, "Deployment", "myapp")["spec"]["template"]["spec"]
        ["terminationGracePeriodSeconds"]
        .as_u64()
        .unwrap();
    assert_eq!(
        termination,
        grace + REVOKE_ON_EXIT_SECS + 2,
        "terminationGracePeriodSeconds = grace {grace}s + revoke {REVOKE_ON_EXIT_SECS}s + 2s"
    );
    // The readiness probe counts standbys; the liveness probe does not depend on etcd.
    let c = &find(&app, "Deployment", "myapp")["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/metrics");
}

// ---------------------------------------------------------------------------------------------
// Schemas, with the tools scripts/deps.sh installs.
// ---------------------------------------------------------------------------------------------

/// A tool from PATH, or from the virtualenv scripts/deps.sh makes (`$SINGLETON_EXEC_TOOLS`,
/// default target/tools). `None` (after a SKIPPED line) if missing; a failure under CI=true.
fn tool(name: &str, test: &str) -> Option<PathBuf> {
    let venv = std::env::var_os("SINGLETON_EXEC_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(ROOT).join("target/tools"));
    let found = std::iter::once(venv.join("bin"))
        .chain(std::env::split_paths(
            &std::env::var_os("PATH").unwrap_or_default(),
        ))
        .map(|d| d.join(name))
        .find(|p| p.is_file());
    if found.is_none() {
        let why = format!(
            "{test}: {name} is not installed (scripts/deps.sh installs it: `. scripts/deps.sh; ensure_deps tests`)"
        );
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("CI=true but {why}");
        }
        println!("SKIPPED {why}");
    }
    found
}

fn run(cmd: &mut Command) -> String {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn validate_strictly(validator: &Path, files: &[PathBuf]) {
    let out = run(Command::new(validator).arg("--strict").args(files));
    let passed = out
        .lines()
        .filter(|l| l.contains(" passed for resource "))
        .count();
    assert!(passed > 0, "kubernetes-validate checked nothing:\n{out}");
    println!("kubernetes-validate --strict: {passed} resources passed");
}

/// Every `$(VAR)` in a container's env refers to a variable listed before it (Kubernetes expands
/// only those; a later one stays the literal text).
fn check_env_references(docs: &[Value]) {
    for d in docs {
        let containers = d["spec"]["template"]["spec"]["containers"].as_array();
        for c in containers.into_iter().flatten() {
            let mut defined: Vec<String> = Vec::new();
            for e in c["env"].as_array().into_iter().flatten() {
                let value = e["value"].as_str().unwrap_or("");
                for part in value.split("$(").skip(1) {
                    let var = part.split(')').next().unwrap_or("");
                    assert!(
                        defined.iter().any(|v| v == var),
                        "{}/{}: {} uses $({var}) before it is defined",
                        d["kind"],
                        d["metadata"]["name"],
                        e["name"]
                    );
                }
                defined.push(e["name"].as_str().unwrap().to_owned());
            }
        }
    }
}

#[test]
fn manifests_and_kustomize_output_validate_strictly() {
    let test = "manifests_and_kustomize_output_validate_strictly";
    let (Some(kubectl), Some(validator)) =
        (tool("kubectl", test), tool("kubernetes-validate", test))
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut files: Vec<PathBuf> = std::fs::read_dir(k8s("base"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .filter(|p| !p.ends_with("kustomization.yaml"))
        .collect();
    files.sort();
    let mut rendered = BTreeMap::new();
    for (name, rel) in [
        ("example", "."),
        ("base", "base"),
        ("etcd-tls", "overlays/etcd-tls"),
    ] {
        let yaml = run(Command::new(&kubectl).arg("kustomize").arg(k8s(rel)));
        let docs = parse_yaml(&yaml);
        check_env_references(&docs);
        let path = dir.path().join(format!("{name}.yaml"));
        std::fs::write(&path, &yaml).unwrap();
        files.push(path);
        rendered.insert(name, docs);
    }
    // The one command applies everything: etcd, the application, budgets, Services, no Secret.
    let kinds: Vec<String> = rendered["example"]
        .iter()
        .map(|d| {
            format!(
                "{}/{}",
                d["kind"].as_str().unwrap(),
                d["metadata"]["name"].as_str().unwrap()
            )
        })
        .collect();
    for want in [
        "StatefulSet/etcd",
        "Service/etcd",
        "PodDisruptionBudget/etcd",
        "Deployment/myapp",
        "PodDisruptionBudget/myapp",
        "Service/myapp",
        "ConfigMap/myapp-singleton",
        "NetworkPolicy/etcd",
    ] {
        assert!(
            kinds.iter().any(|k| k == want),
            "{want} missing from {kinds:?}"
        );
    }
    for (name, docs) in &rendered {
        assert!(
            docs.iter().all(|d| d["kind"] != "Secret"),
            "{name}: a Secret in a kustomization would be overwritten by every apply"
        );
    }
    // The overlay mounts the Secrets that create-secrets makes, under the names it makes them.
    let secrets = dir.path().join("secrets");
    run(Command::new(k8s("overlays/etcd-tls/create-secrets"))
        .arg("--print")
        .arg(&secrets)
        .env("PATH", path_with(&kubectl)));
    let made: Vec<String> = std::fs::read_dir(&secrets)
        .unwrap()
        .map(|e| {
            e.unwrap()
                .file_name()
                .to_string_lossy()
                .trim_end_matches(".yaml")
                .to_owned()
        })
        .collect();
    let yaml = serde_json::to_string(&rendered["etcd-tls"]).unwrap();
    for name in ["etcd-tls", "myapp-etcd-client", "myapp-resign-token"] {
        assert!(
            made.iter().any(|m| m == name),
            "create-secrets made {made:?}"
        );
        assert!(
            yaml.contains(&format!("\"secretName\":\"{name}\"")),
            "{name} not mounted"
        );
    }
    for m in &made {
        files.push(secrets.join(format!("{m}.yaml")));
    }
    validate_strictly(&validator, &files);
}

/// PATH with the directory of `tool` first (create-secrets finds the same kubectl).
fn path_with(tool: &Path) -> std::ffi::OsString {
    let mut dirs = vec![tool.parent().unwrap().to_path_buf()];
    dirs.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    std::env::join_paths(dirs).unwrap()
}

/// The data of a Secret manifest, decoded.
fn secret_data(path: &Path) -> BTreeMap<String, Vec<u8>> {
    let docs = parse_yaml(&std::fs::read_to_string(path).unwrap());
    docs[0]["data"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            let out = Command::new("base64")
                .arg("-d")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .and_then(|mut c| {
                    use std::io::Write;
                    c.stdin
                        .take()
                        .unwrap()
                        .write_all(v.as_str().unwrap().as_bytes())?;
                    c.wait_with_output()
                })
                .unwrap();
            (k.clone(), out.stdout)
        })
        .collect()
}

#[test]
fn overlay_certificates_are_accepted_by_etcd_with_client_certificate_auth() {
    let test = "overlay_certificates_are_accepted_by_etcd_with_client_certificate_auth";
    let Some(kubectl) = tool("kubectl", test) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let secrets = dir.path().join("secrets");
    run(Command::new(k8s("overlays/etcd-tls/create-secrets"))
        .args(["--namespace", "prod", "--print"])
        .arg(&secrets)
        .env("PATH", path_with(&kubectl)));
    let write = |secret: &str, key: &str| -> String {
        let data = secret_data(&secrets.join(format!("{secret}.yaml")));
        let path = dir.path().join(format!("{secret}-{key}"));
        std::fs::write(&path, &data[key]).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let (ca, server, server_key) = (
        write("etcd-tls", "ca.crt"),
        write("etcd-tls", "server.crt"),
        write("etcd-tls", "server.key"),
    );
    let (client_ca, client, client_key) = (
        write("myapp-etcd-client", "ca.crt"),
        write("myapp-etcd-client", "tls.crt"),
        write("myapp-etcd-client", "tls.key"),
    );
    assert_eq!(
        std::fs::read(&ca).unwrap(),
        std::fs::read(&client_ca).unwrap(),
        "one CA for members and clients"
    );
    let token = secret_data(&secrets.join("myapp-resign-token.yaml"))["token"].clone();
    assert!(
        String::from_utf8_lossy(&token).trim().len() >= 40,
        "32 random bytes, base64"
    );

    // The server certificate names every member as the overlay's endpoints and peer URLs do.
    let text = run(Command::new("openssl").args(["x509", "-noout", "-text", "-in", &server]));
    for i in 0..3 {
        for name in [format!("etcd-{i}.etcd"), format!("etcd-{i}.etcd.prod.svc")] {
            assert!(
                text.contains(&format!("DNS:{name},")) || text.contains(&format!("DNS:{name}\n")),
                "{name} not in\n{text}"
            );
        }
    }

    // A real etcd with these files and client-certificate authentication, and a replica with the
    // application's certificate: it leads and runs its child.
    let etcd = EtcdCluster::start_with(
        1,
        Options {
            tls: Some((server.clone().into(), server_key.into(), ca.clone().into())),
        },
    );
    let marker = dir.path().join("ran");
    let mut r = Replica::start(
        "tls",
        &etcd.endpoints(),
        &[
            "--election",
            "k8s-tls",
            "--cacert",
            &ca,
            "--cert",
            &client,
            "--key",
            &client_key,
            "--",
            "sh",
            "-c",
            &format!("touch {} && exec sleep 300", marker.display()),
        ],
    );
    wait_for(Duration::from_secs(30), || marker.exists(), || r.log());
    r.signal(libc::SIGTERM);
    assert_eq!(r.wait(Duration::from_secs(30)), 143);
}
