//! Error type shared by every stage of the engine (parse, resolve, execute, storage).

use thiserror::Error;

/// A position in the deployed script (1-based line and column).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    /// Line, starting at 1 (0 when unknown).
    pub line: u64,
    /// Column, starting at 1 (0 when unknown).
    pub col: u64,
}

impl std::fmt::Display for Pos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}, column {}", self.line, self.col)
    }
}

/// Every failure the engine can report. A call that fails with any of these
/// leaves storage untouched (writes go to an overlay that is dropped).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SqlError {
    /// Malformed script or statement.
    #[error("syntax error at {pos}: {msg}")]
    Parse {
        /// Where.
        pos: Pos,
        /// What.
        msg: String,
    },
    /// Unknown name, wrong arity or type mismatch found before execution.
    #[error("error at {pos}: {msg}")]
    Resolve {
        /// Where.
        pos: Pos,
        /// What.
        msg: String,
    },
    /// Construct recognised but not supported by AergoSQL.
    #[error("unsupported at {pos}: {msg}")]
    Unsupported {
        /// Where.
        pos: Pos,
        /// What.
        msg: String,
    },
    /// `RAISE EXCEPTION` from contract code.
    #[error("exception: {0}")]
    Exception(String),
    /// The memory budget was exceeded (rows, groups, sort and result buffers).
    #[error("query uses more than {limit} bytes of memory")]
    Memory {
        /// The budget in bytes.
        limit: usize,
    },
    /// Gas limit reached.
    #[error("out of gas (limit {limit})")]
    OutOfGas {
        /// The limit that was exceeded.
        limit: u64,
    },
    /// NOT NULL, UNIQUE, PRIMARY KEY, CHECK or length constraint violated.
    #[error("constraint violation: {0}")]
    Constraint(String),
    /// Integer or decimal overflow.
    #[error("overflow: {0}")]
    Overflow(String),
    /// Division or modulo by zero.
    #[error("division by zero")]
    DivisionByZero,
    /// A value has the wrong type at run time (e.g. a bad cast).
    #[error("type error: {0}")]
    Type(String),
    /// Wrong function name or arguments in a call.
    #[error("call error: {0}")]
    Call(String),
    /// Nesting of calls too deep.
    #[error("stack depth limit exceeded")]
    StackDepth,
    /// Only the owner may do this.
    #[error("permission denied: {0}")]
    Permission(String),
    /// A chain-context operation failed (e.g. `send` with too little balance).
    #[error("chain error: {0}")]
    Chain(String),
    /// The storage backend failed, or stored data is corrupt.
    #[error("storage error: {0}")]
    Storage(String),
    /// JIT compilation failed.
    #[error("jit error: {0}")]
    Jit(String),
}

impl SqlError {
    /// Position of deploy-time errors, if any.
    pub fn pos(&self) -> Option<Pos> {
        match self {
            SqlError::Parse { pos, .. }
            | SqlError::Resolve { pos, .. }
            | SqlError::Unsupported { pos, .. } => Some(*pos),
            _ => None,
        }
    }
}

/// Shorthand result type.
pub type Result<T, E = SqlError> = std::result::Result<T, E>;

pub(crate) fn resolve_err<T>(pos: Pos, msg: impl Into<String>) -> Result<T> {
    Err(SqlError::Resolve {
        pos,
        msg: msg.into(),
    })
}

pub(crate) fn unsupported<T>(pos: Pos, msg: impl Into<String>) -> Result<T> {
    Err(SqlError::Unsupported {
        pos,
        msg: msg.into(),
    })
}
