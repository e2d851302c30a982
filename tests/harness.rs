//! The test harness itself: real etcd, one member and three, cleaned up afterwards.

use std::time::Duration;

use crate::support::{runtime, EtcdCluster};

async fn put_get(endpoint: &str, key: &str) -> Result<String, etcd_client::Error> {
    let opts = etcd_client::ConnectOptions::new()
        .with_timeout(Duration::from_secs(3))
        .with_connect_timeout(Duration::from_secs(3));
    let mut c = etcd_client::Client::connect([endpoint], Some(opts)).await?;
    c.put(key, "v-".to_owned() + key, None).await?;
    let r = c.get(key, None).await?;
    Ok(r.kvs()
        .first()
        .map(|kv| String::from_utf8_lossy(kv.value()).into_owned())
        .unwrap_or_default())
}

fn etcd_pids() -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .map(|c| c.trim() == "etcd")
                .unwrap_or(false)
        })
        .collect()
}

#[test]
fn single_member_writes_and_reads_then_cleans_up() {
    let (pid, dir) = {
        let etcd = EtcdCluster::single();
        let got = runtime()
            .block_on(put_get(&etcd.endpoint(0), "k1"))
            .expect("put/get");
        assert_eq!(got, "v-k1");
        (etcd.pid(0).unwrap() as i32, etcd.dir())
    };
    assert!(
        !etcd_pids().contains(&pid),
        "etcd {pid} still running after drop"
    );
    assert!(!dir.exists(), "{} left behind", dir.display());
}

#[test]
fn three_members_survive_one_stopped_member_and_clean_up() {
    let (pids, leftover_dirs) = {
        let mut etcd = EtcdCluster::start(3);
        let rt = runtime();
        assert_eq!(rt.block_on(put_get(&etcd.endpoint(1), "a")).unwrap(), "v-a");
        let leader = etcd.leader_index().expect("a raft leader");
        etcd.stop(leader);
        let other = (leader + 1) % 3;
        // A new raft leader may take an election timeout; retry until writes work again.
        let mut last = None;
        for _ in 0..100 {
            match rt.block_on(put_get(&etcd.endpoint(other), "b")) {
                Ok(v) => {
                    last = Some(v);
                    break;
                }
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
        assert_eq!(
            last.as_deref(),
            Some("v-b"),
            "cluster unusable with one member stopped"
        );
        let pids: Vec<i32> = (0..3)
            .filter_map(|i| etcd.pid(i).map(|p| p as i32))
            .collect();
        (pids, etcd.dir())
    };
    let running = etcd_pids();
    assert!(
        pids.iter().all(|p| !running.contains(p)),
        "etcd members still running: {pids:?}"
    );
    assert!(
        !leftover_dirs.exists(),
        "{} left behind",
        leftover_dirs.display()
    );
}
