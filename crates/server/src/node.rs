//! This node's id: which `trove server` of a cluster answered, in `/status`, on every log line
//! and in the metrics. Set with `[cluster] node_id`, or made on first start and kept in the data
//! directory (`<data>/node-id`), so a node keeps its id across restarts.

use std::io::Write as _;
use std::path::{Path, PathBuf};

/// A node id: 1 to 64 ASCII letters, digits, `-`, `_` or `.`, starting with a letter or digit,
/// so that it reads the same in a log line, a JSON document and a Prometheus label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeId(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a node id; use 1 to 64 letters, digits, '-', '_' or '.', starting with a letter or digit (like \"node-1\")")]
pub struct BadNodeId(String);

/// The file in the data directory that keeps a made-up id.
const FILE: &str = "node-id";

impl NodeId {
    pub fn parse(s: &str) -> Result<NodeId, BadNodeId> {
        let ok = (1..=64).contains(&s.len())
            && s.starts_with(|c: char| c.is_ascii_alphanumeric())
            && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if ok { Ok(NodeId(s.to_owned())) } else { Err(BadNodeId(s.to_owned())) }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A new id, `node-` and six random hex digits (`node-3f9a1c`).
    fn generate() -> NodeId {
        use rand::Rng as _;
        let mut raw = [0u8; 3];
        trove_store::os_rng().fill_bytes(&mut raw);
        NodeId(format!("node-{:02x}{:02x}{:02x}", raw[0], raw[1], raw[2]))
    }

    /// The id kept in `data_dir`, made and written there on the first call.
    pub(crate) fn load_or_create(data_dir: &Path) -> Result<NodeId, NodeIdError> {
        let path = data_dir.join(FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => return NodeId::parse(text.trim()).map_err(|source| NodeIdError::Invalid { path, source }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(NodeIdError::Io { path, source }),
        }
        let id = NodeId::generate();
        // Written whole under another name and renamed, so a crash never leaves half an id.
        let tmp = data_dir.join(format!(".{FILE}.tmp"));
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            writeln!(f, "{}", id.0)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)
        };
        write().map_err(|source| NodeIdError::Io { path: path.clone(), source })?;
        tracing::info!(node_id = %id, path = %path.display(), "made this node's id");
        Ok(id)
    }
}

impl std::fmt::Display for NodeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NodeIdError {
    #[error("cannot read or write this node's id in {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: {source}; fix the file, or delete it to have a new id made")]
    Invalid { path: PathBuf, source: BadNodeId },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_ids_are_short_names_fit_for_logs_json_and_labels() {
        for ok in ["node-1", "a", "dc1.node_2", "N3", &"x".repeat(64)] {
            assert_eq!(NodeId::parse(ok).unwrap().as_str(), ok);
        }
        for bad in ["", "-node", ".x", "node 1", "node\"1", "nöde", "a/b", &"x".repeat(65)] {
            assert!(NodeId::parse(bad).is_err(), "{bad:?}");
        }
        let made = NodeId::generate();
        assert!(NodeId::parse(made.as_str()).is_ok() && made.as_str().len() == 11, "{made}");
    }

    #[test]
    fn a_made_id_is_kept_in_the_data_directory() {
        let dir = tempfile::tempdir().unwrap();
        let first = NodeId::load_or_create(dir.path()).unwrap();
        assert_eq!(NodeId::load_or_create(dir.path()).unwrap(), first);
        std::fs::write(dir.path().join(FILE), "bad id\n").unwrap();
        let err = NodeId::load_or_create(dir.path()).unwrap_err().to_string();
        assert!(err.contains("node-id") && err.contains("delete it"), "{err}");
    }
}
