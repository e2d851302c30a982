//! What etcd answered, as plain data: the edge between etcd-client's response types, which no test
//! can build, and the election's decisions, which are tested on these.
//!
//! Every transaction the election sends has a builder, and the positions of its operations are
//! named once, beside it (`JOIN_HEAD`, `VIEW_SLOTS`, ...): the decision on its answer reads
//! `answer.first(JOIN_HEAD)`, never a bare number, and a test checks each builder
//! against its names (`ops_of`, in the tests).

use etcd_client::{KeyValue, TxnOpResponse, TxnResponse};

/// A key as etcd returned it: the fields the election decides on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Found {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub lease: i64,
    pub create_revision: i64,
    pub mod_revision: i64,
}

impl Found {
    pub fn of(kv: &KeyValue) -> Found {
        Found {
            key: kv.key().to_vec(),
            value: kv.value().to_vec(),
            lease: kv.lease(),
            create_revision: kv.create_revision(),
            mod_revision: kv.mod_revision(),
        }
    }

    pub fn as_kv(&self) -> Kv<'_> {
        Kv {
            key: &self.key,
            value: &self.value,
            lease: self.lease,
            create_revision: self.create_revision,
        }
    }
}

/// The parts of an etcd key-value the election reads, borrowed (so the pure parts are tested on
/// plain data).
#[derive(Debug, Clone, Copy)]
pub struct Kv<'a> {
    pub key: &'a [u8],
    pub value: &'a [u8],
    pub lease: i64,
    pub create_revision: i64,
}

/// Borrows the key-values of a read.
pub fn kvs(from: &[KeyValue]) -> Vec<Kv<'_>> {
    from.iter()
        .map(|kv| Kv {
            key: kv.key(),
            value: kv.value(),
            lease: kv.lease(),
            create_revision: kv.create_revision(),
        })
        .collect()
}

/// One transaction's answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Answer {
    /// Whether the transaction's condition held (its `then` branch ran).
    pub succeeded: bool,
    /// The store revision of the transaction; `None` if etcd sent no header.
    pub revision: Option<i64>,
    /// What each operation of the branch that ran read, in the order sent (nothing for a put or a
    /// delete).
    pub reads: Vec<Vec<Found>>,
}

impl Answer {
    pub fn of(resp: &TxnResponse) -> Answer {
        let reads = resp
            .op_responses()
            .iter()
            .map(|op| match op {
                TxnOpResponse::Get(g) => g.kvs().iter().map(Found::of).collect(),
                _ => Vec::new(),
            })
            .collect();
        Answer {
            succeeded: resp.succeeded(),
            revision: resp.header().map(|h| h.revision()),
            reads,
        }
    }

    /// The keys the operation at `op` read (none if it was not a read, or is not there).
    pub fn read(&self, op: usize) -> &[Found] {
        self.reads.get(op).map_or(&[], Vec::as_slice)
    }

    /// The first key the operation at `op` read.
    pub fn first(&self, op: usize) -> Option<&Found> {
        self.read(op).first()
    }

    /// An answer with `reads` at their positions and nothing read elsewhere, as a test writes one.
    #[cfg(test)]
    pub fn with(
        succeeded: bool,
        revision: Option<i64>,
        reads: impl IntoIterator<Item = (usize, Vec<Found>)>,
    ) -> Answer {
        let mut answer = Answer {
            succeeded,
            revision,
            reads: Vec::new(),
        };
        for (op, found) in reads {
            if answer.reads.len() <= op {
                answer.reads.resize(op + 1, Vec::new());
            }
            answer.reads[op] = found;
        }
        answer
    }
}

/// A branch's operations: (kind, key).
#[cfg(test)]
pub type Ops = Vec<(String, String)>;

/// The operations of a built transaction, as `(kind, key)` per branch (`then`, `else`), read from
/// its debug form: what tests check a builder against its answer's named positions with.
#[cfg(test)]
pub fn ops_of(txn: &etcd_client::Txn) -> (Ops, Ops) {
    let text = format!("{txn:?}");
    let branch = |name: &str, end: &str| {
        let start = text.find(name).map_or(text.len(), |i| i + name.len());
        let stop = text[start..].find(end).map_or(text.len(), |i| start + i);
        let mut ops = Vec::new();
        for op in text[start..stop].split("request: Some(").skip(1) {
            let kind = op.split('(').next().unwrap_or_default().to_owned();
            let bytes = op
                .split_once("key: [")
                .and_then(|(_, rest)| rest.split_once(']'))
                .map_or("", |(b, _)| b);
            let key: Vec<u8> = bytes
                .split(", ")
                .filter_map(|b| b.trim().parse().ok())
                .collect();
            ops.push((kind, String::from_utf8_lossy(&key).into_owned()));
        }
        ops
    };
    (
        branch("success: [", "failure: ["),
        branch("failure: [", "c_when"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_are_found_by_position_and_missing_ones_are_empty() {
        let k = |key: &[u8]| Found {
            key: key.to_vec(),
            ..Found::default()
        };
        let answer = Answer {
            succeeded: true,
            revision: Some(9),
            reads: vec![vec![], vec![k(b"a"), k(b"b")]],
        };
        // (op, first key read)
        let rows: [(usize, Option<&[u8]>); 4] =
            [(0, None), (1, Some(b"a")), (2, None), (usize::MAX, None)];
        for (op, want) in rows {
            assert_eq!(answer.first(op).map(|f| &f.key[..]), want);
        }
        assert_eq!(answer.read(1).len(), 2);
    }
}
