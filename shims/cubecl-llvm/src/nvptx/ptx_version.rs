//! The PTX ISA version a CUDA driver loads.

use core::fmt;

/// A PTX ISA version, written as its two digits: PTX 8.7 is `87`.
///
/// Each CUDA release brings a PTX ISA version, and a driver loads PTX up to the one of its own
/// release (NVIDIA's PTX ISA release notes list the pairs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PtxVersion(u32);

impl PtxVersion {
    /// The newest PTX version a driver loads, from its CUDA version as `cuDriverGetVersion`
    /// reports it (`1000 * major + 10 * minor`: 12.8 is `12080`). `None` before CUDA 10.0.
    ///
    /// Within a major release the PTX minor follows the CUDA minor, with two exceptions
    /// in 12.x: 12.6 kept 12.5's PTX 8.5, and 12.7 was never released, so 12.8 brings PTX 8.7.
    /// A major release newer than 13 gets PTX 9.0, which it loads though it may load newer.
    pub fn for_driver(driver: i32) -> Option<Self> {
        let (major, minor) = (driver / 1000, (driver % 1000) / 10);
        let ptx = match major {
            ..=9 => return None,
            10 => 63 + minor.min(2),
            11 => 70 + minor.min(8),
            12 if minor <= 5 => 80 + minor,
            12 if minor == 6 => 85,
            12 => 79 + minor.min(9),
            13 => 90 + minor.min(9),
            _ => 90,
        };
        Some(Self(ptx as u32))
    }
}

impl fmt::Display for PtxVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ptx{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::PtxVersion;

    #[test]
    fn follows_the_release_table() {
        for (driver, ptx) in [
            (10000, Some(63)),
            (10020, Some(65)),
            (11000, Some(70)),
            (11080, Some(78)),
            (12000, Some(80)),
            (12040, Some(84)),
            (12050, Some(85)),
            (12060, Some(85)),
            (12080, Some(87)),
            (12090, Some(88)),
            (13000, Some(90)),
            (9020, None),
        ] {
            assert_eq!(
                PtxVersion::for_driver(driver),
                ptx.map(PtxVersion),
                "{driver}"
            );
        }
        assert_eq!(PtxVersion::for_driver(12080).unwrap().to_string(), "ptx87");
    }
}
