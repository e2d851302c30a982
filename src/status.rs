//! `singleton-exec status`: who leads an election right now.

use crate::cli::StatusArgs;
use crate::config::{validate_election, EtcdConfig};
use crate::election::Election;
use crate::etcd::Connector;
use crate::exit_code;

/// Exit code when the election has no leader.
pub const NO_LEADER: i32 = 1;

/// Prints the leader and returns 0, or prints that there is none and returns 1.
pub async fn run(args: StatusArgs) -> i32 {
    let name = match validate_election(&args.election) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("singleton-exec: {e}");
            return exit_code::USAGE;
        }
    };
    let etcd = match EtcdConfig::from_args(args.etcd) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("singleton-exec: {e}");
            return exit_code::USAGE;
        }
    };
    let election = Election::new(&args.prefix, &name);
    let connector = Connector::new(etcd);
    let mut last = None;
    for _ in 0..connector.endpoints().len() {
        let result = async {
            let conn = connector.get().await?;
            let r = election.leader(&mut conn.client.clone()).await;
            if r.is_err() {
                connector.failed(conn.generation);
            }
            r
        }
        .await;
        match result {
            Ok(Some(l)) => {
                println!("election:   {name}");
                println!("leader:     {}", l.id);
                println!("key:        {}", l.key);
                println!("lease:      {:x}", l.lease);
                println!("revision:   {}", l.revision);
                println!("candidates: {}", l.candidates);
                return 0;
            }
            Ok(None) => {
                println!("election:   {name}");
                println!("leader:     none");
                return NO_LEADER;
            }
            Err(e) if e.is_rejected() => {
                eprintln!("singleton-exec: {e}");
                return exit_code::ETCD_REJECTED;
            }
            Err(e) => last = Some(e),
        }
    }
    if let Some(e) = last {
        eprintln!("singleton-exec: cannot read the election: {e}");
    }
    exit_code::INTERNAL
}
