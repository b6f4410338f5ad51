//! JSON-RPC methods of DPoS staking: accounts' stakes and ballots, candidates.
//!
//! STUB: in progress.

use crate::node::Node;
use serde_json::Value;

/// Handles `method` if it is a staking method (`None` otherwise). Errors are
/// `(JSON-RPC code, message)`.
pub fn dispatch(_node: &Node, _method: &str, _p: &Value) -> Option<Result<Value, (i64, String)>> {
    None
}
