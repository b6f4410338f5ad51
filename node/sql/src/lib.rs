//! AergoSQL.
