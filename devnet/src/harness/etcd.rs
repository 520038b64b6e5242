//! A real etcd cluster on loopback: N members, each with its own client and peer port.

use std::path::Path;
use std::time::Duration;

use crate::error::DevnetError;
use crate::harness::ports::free_port;
use crate::harness::process::{ManagedProcess, ProcessSpec, RecordedProcess};
use crate::harness::tools::Tools;
use crate::harness::wait::poll_until;

/// One member of the cluster.
#[derive(Debug)]
pub struct EtcdMember {
    process: ManagedProcess,
    client_port: u16,
    peer_port: u16,
}

impl EtcdMember {
    /// Client URL (`http://127.0.0.1:<port>`).
    pub fn client_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// Peer URL.
    pub fn peer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.peer_port)
    }

    /// The process, for fault injection.
    pub fn process(&mut self) -> &mut ManagedProcess {
        &mut self.process
    }

    /// Whether `/health` answers healthy right now.
    pub async fn is_healthy(&self, http: &reqwest::Client) -> bool {
        probe_health(http, self.client_port).await
    }
}

/// A running cluster.
#[derive(Debug)]
pub struct EtcdCluster {
    members: Vec<EtcdMember>,
    http: reqwest::Client,
}

const READY_TIMEOUT: Duration = Duration::from_secs(20);
const START_ATTEMPTS: usize = 3;

impl EtcdCluster {
    /// Start `size` members under `dir` (one data dir each) and wait until every member is
    /// healthy. Retries with new ports if a port was taken meanwhile.
    pub async fn start(tools: &Tools, dir: &Path, size: usize) -> Result<Self, DevnetError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(1))
            .build()
            .map_err(|e| DevnetError::Http(e.to_string()))?;
        let mut last_error = None;
        for attempt in 0..START_ATTEMPTS {
            let ports = (0..size)
                .map(|_| Ok((free_port()?, free_port()?)))
                .collect::<std::io::Result<Vec<(u16, u16)>>>()
                .map_err(DevnetError::Ports)?;
            let initial_cluster = ports
                .iter()
                .enumerate()
                .map(|(i, (_, peer))| format!("etcd-{i}=http://127.0.0.1:{peer}"))
                .collect::<Vec<_>>()
                .join(",");
            let token = format!("multibridge-devnet-{}-{attempt}", std::process::id());
            let mut members = Vec::with_capacity(size);
            let mut spawn_error = None;
            for (i, (client_port, peer_port)) in ports.iter().copied().enumerate() {
                let data_dir = dir.join(format!("etcd-{i}.data"));
                // A fresh cluster needs fresh data dirs.
                let _ = std::fs::remove_dir_all(&data_dir);
                let spec = member_spec(
                    tools,
                    dir,
                    i,
                    client_port,
                    peer_port,
                    &data_dir,
                    &initial_cluster,
                    &token,
                );
                match ManagedProcess::spawn(spec) {
                    Ok(process) => members.push(EtcdMember {
                        process,
                        client_port,
                        peer_port,
                    }),
                    Err(e) => {
                        spawn_error = Some(DevnetError::from(e));
                        break;
                    }
                }
            }
            let mut cluster = Self {
                members,
                http: http.clone(),
            };
            if let Some(e) = spawn_error {
                return Err(e);
            }
            match cluster.wait_healthy(READY_TIMEOUT).await {
                Ok(()) => return Ok(cluster),
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.unwrap_or_else(|| DevnetError::NotReady {
            component: "etcd cluster".into(),
            waited: READY_TIMEOUT,
        }))
    }

    /// Wait until every running member reports healthy.
    pub async fn wait_healthy(&mut self, timeout: Duration) -> Result<(), DevnetError> {
        let http = self.http.clone();
        let members = &mut self.members;
        poll_until("etcd cluster", timeout, || {
            let exited = members
                .iter_mut()
                .find_map(|m| (!m.process.is_running()).then(|| m.process.name().to_owned()));
            let ports: Vec<u16> = members.iter().map(|m| m.client_port).collect();
            let http = http.clone();
            async move {
                if let Some(name) = exited {
                    return Err(DevnetError::Exited(name));
                }
                for port in ports {
                    if !probe_health(&http, port).await {
                        return Ok(false);
                    }
                }
                Ok(true)
            }
        })
        .await
    }

    /// Client endpoints of every member.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(EtcdMember::client_url).collect()
    }

    /// Every running member's pid.
    pub fn pids(&self) -> Vec<i32> {
        self.members
            .iter()
            .filter_map(|m| m.process.pid())
            .collect()
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether the cluster has no members.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// One member, for fault injection.
    pub fn member(&mut self, index: usize) -> Option<&mut EtcdMember> {
        self.members.get_mut(index)
    }

    /// Whether member `index` answers healthy now.
    pub async fn member_healthy(&self, index: usize) -> bool {
        match self.members.get(index) {
            Some(m) => m.is_healthy(&self.http).await,
            None => false,
        }
    }

    /// The member that is etcd's raft leader now, as the answering members report it
    /// (`None` when no member answers or none knows a leader).
    pub async fn leader_index(&self) -> Option<usize> {
        self.leader_named_by(|_| true).await
    }

    /// The member that a live member other than `faulted` reports as its leader, when that is
    /// not `faulted` itself: the cluster elected a new leader after `faulted` was killed or
    /// paused. `faulted` is never asked (a paused member holds the request).
    pub async fn new_leader_without(&self, faulted: usize) -> Option<usize> {
        self.leader_named_by(|i| i != faulted).await
    }

    /// Ask the members that `ask` picks, all at once, which member leads; the first leader one
    /// of them names that is itself among those that answered.
    async fn leader_named_by(&self, ask: impl Fn(usize) -> bool) -> Option<usize> {
        let asked: Vec<(usize, u16)> = self
            .members
            .iter()
            .enumerate()
            .filter(|(i, _)| ask(*i))
            .map(|(i, m)| (i, m.client_port))
            .collect();
        let statuses = futures::future::join_all(
            asked
                .iter()
                .map(|(_, port)| member_status(&self.http, *port)),
        )
        .await;
        let ids: Vec<(usize, String)> = asked
            .iter()
            .zip(&statuses)
            .filter_map(|((i, _), s)| s.as_ref().map(|(id, _)| (*i, id.clone())))
            .collect();
        statuses
            .iter()
            .flatten()
            .find_map(|(_, leader)| ids.iter().find(|(_, id)| id == leader).map(|(i, _)| *i))
    }

    /// Stop every member gracefully (etcd flushes its WAL), killing stragglers.
    pub fn stop(&mut self) {
        for member in &mut self.members {
            let _ = member.process.stop(Duration::from_secs(10));
        }
    }

    /// Keep running after the handle is dropped (`devnet up`).
    pub fn detach(self) -> Vec<RecordedProcess> {
        self.members
            .into_iter()
            .filter_map(|m| m.process.detach())
            .collect()
    }
}

/// `GET /health` on one member's client port.
async fn probe_health(http: &reqwest::Client, client_port: u16) -> bool {
    let url = format!("http://127.0.0.1:{client_port}/health");
    match http.get(url).send().await {
        Ok(resp) => resp
            .json::<serde_json::Value>()
            .await
            .map(|v| v["health"] == "true")
            .unwrap_or(false),
        Err(_) => false,
    }
}

/// `POST /v3/maintenance/status` on one member: `(its member id, the leader's member id)`.
async fn member_status(http: &reqwest::Client, client_port: u16) -> Option<(String, String)> {
    let url = format!("http://127.0.0.1:{client_port}/v3/maintenance/status");
    let status: serde_json::Value = http
        .post(url)
        .json(&serde_json::json!({}))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    // The gateway renders uint64 as strings; accept numbers too.
    let id = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    let leader = id(&status["leader"]).filter(|l| l != "0")?;
    Some((id(&status["header"]["member_id"])?, leader))
}

#[allow(clippy::too_many_arguments)]
fn member_spec(
    tools: &Tools,
    dir: &Path,
    index: usize,
    client_port: u16,
    peer_port: u16,
    data_dir: &Path,
    initial_cluster: &str,
    token: &str,
) -> ProcessSpec {
    let client = format!("http://127.0.0.1:{client_port}");
    let peer = format!("http://127.0.0.1:{peer_port}");
    ProcessSpec {
        name: format!("etcd-{index}"),
        program: tools.etcd.clone(),
        args: vec![
            "--name".into(),
            format!("etcd-{index}"),
            "--data-dir".into(),
            data_dir.display().to_string(),
            "--listen-client-urls".into(),
            client.clone(),
            "--advertise-client-urls".into(),
            client,
            "--listen-peer-urls".into(),
            peer.clone(),
            "--initial-advertise-peer-urls".into(),
            peer,
            "--initial-cluster".into(),
            initial_cluster.to_owned(),
            "--initial-cluster-token".into(),
            token.to_owned(),
            "--initial-cluster-state".into(),
            "new".into(),
            // Fast failover on loopback: a new etcd leader in under a second, and leases of
            // 1 s (etcd's shortest TTL is 1.5 election timeouts, rounded up to seconds).
            "--heartbeat-interval".into(),
            "50".into(),
            "--election-timeout".into(),
            "500".into(),
            "--log-level".into(),
            "warn".into(),
        ],
        envs: vec![],
        log_path: dir.join(format!("etcd-{index}.log")),
    }
}
