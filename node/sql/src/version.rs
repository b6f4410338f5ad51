//! Engine versions: consensus-visible changes to AergoSQL's semantics (what a script may
//! contain, what a statement computes, what it costs) come with a new [`EngineVersion`]. A
//! contract records the version it was deployed under (`P 00 "engine"`, absent for version 1,
//! so contracts deployed before versions existed keep their stored bytes) and is compiled —
//! at deploy, at every upgrade and at every load — with that version's rules forever, so a
//! later change cannot alter what an already-deployed contract computes. The chain chooses
//! the version of a new deploy by block height ([`EngineVersion::at_height`]), so every node
//! switches at the same block.
//!
//! Where versions are checked: the compiler reads `Catalog::version` wherever a newer
//! version accepts something an older one refused (`compile`'s `arrays_allowed`); the
//! executor needs no check, since a plan can only contain what its version compiled.

/// An AergoSQL engine version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum EngineVersion {
    /// The engine before versions: scalars only (no arrays, no `FOREACH`).
    V1,
    /// Arrays (`INTEGER[]`, `BIGINT[]`, `TEXT[]` values), `FOREACH … IN ARRAY`, `unnest` in
    /// FROM, `= ANY (array)`.
    #[default]
    V2,
}

impl EngineVersion {
    /// The newest version (what [`crate::Contract::deploy`] uses).
    pub const LATEST: EngineVersion = EngineVersion::V2;

    /// The version's number as stored (1, 2, …).
    pub fn number(self) -> u8 {
        match self {
            EngineVersion::V1 => 1,
            EngineVersion::V2 => 2,
        }
    }

    /// The version with this stored number.
    pub fn from_number(n: u8) -> Option<EngineVersion> {
        match n {
            1 => Some(EngineVersion::V1),
            2 => Some(EngineVersion::V2),
            _ => None,
        }
    }

    /// The version a deploy at block `height` gets: the newest whose activation height
    /// (`activations`, one per version after V1, in version order) is at or below `height`.
    /// A version without an activation height is not active.
    pub fn at_height(height: u64, activations: &[(EngineVersion, u64)]) -> EngineVersion {
        activations
            .iter()
            .filter(|(_, h)| *h <= height)
            .map(|(v, _)| *v)
            .max()
            .unwrap_or(EngineVersion::V1)
    }

    /// Whether scripts of this version may use arrays and `FOREACH`.
    pub fn arrays(self) -> bool {
        self >= EngineVersion::V2
    }
}

impl std::fmt::Display for EngineVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.number())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_activation() {
        for v in [EngineVersion::V1, EngineVersion::V2] {
            assert_eq!(EngineVersion::from_number(v.number()), Some(v));
        }
        assert_eq!(EngineVersion::from_number(0), None);
        assert_eq!(EngineVersion::from_number(3), None);
        let act = [(EngineVersion::V2, 100)];
        assert_eq!(EngineVersion::at_height(0, &act), EngineVersion::V1);
        assert_eq!(EngineVersion::at_height(99, &act), EngineVersion::V1);
        assert_eq!(EngineVersion::at_height(100, &act), EngineVersion::V2);
        assert_eq!(EngineVersion::at_height(5, &[]), EngineVersion::V1);
        assert!(!EngineVersion::V1.arrays());
        assert!(EngineVersion::LATEST.arrays());
    }
}
