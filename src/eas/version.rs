//! EAS protocol versions (MS-ASHTTP 2.2.1.1.2.4 MS-ASProtocolVersion).

use std::fmt;

/// A protocol version this gateway speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ProtocolVersion {
    V12_0,
    V12_1,
    V14_0,
    V14_1,
    V16_0,
    V16_1,
}

/// Every version, oldest first, as listed in `MS-ASProtocolVersions`.
pub const ALL_VERSIONS: [ProtocolVersion; 6] = [
    ProtocolVersion::V12_0,
    ProtocolVersion::V12_1,
    ProtocolVersion::V14_0,
    ProtocolVersion::V14_1,
    ProtocolVersion::V16_0,
    ProtocolVersion::V16_1,
];

impl ProtocolVersion {
    /// Parses the `MS-ASProtocolVersion` header value ("14.1").
    pub fn parse(s: &str) -> Option<ProtocolVersion> {
        Some(match s.trim() {
            "12.0" => ProtocolVersion::V12_0,
            "12.1" => ProtocolVersion::V12_1,
            "14.0" => ProtocolVersion::V14_0,
            "14.1" => ProtocolVersion::V14_1,
            "16.0" => ProtocolVersion::V16_0,
            "16.1" => ProtocolVersion::V16_1,
            _ => return None,
        })
    }

    /// Decodes the version byte of the base64 query form (MS-ASHTTP 2.2.1.1.1.1: 121, 140, ...).
    pub fn from_byte(b: u8) -> Option<ProtocolVersion> {
        Some(match b {
            120 => ProtocolVersion::V12_0,
            121 => ProtocolVersion::V12_1,
            140 => ProtocolVersion::V14_0,
            141 => ProtocolVersion::V14_1,
            160 => ProtocolVersion::V16_0,
            161 => ProtocolVersion::V16_1,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ProtocolVersion::V12_0 => "12.0",
            ProtocolVersion::V12_1 => "12.1",
            ProtocolVersion::V14_0 => "14.0",
            ProtocolVersion::V14_1 => "14.1",
            ProtocolVersion::V16_0 => "16.0",
            ProtocolVersion::V16_1 => "16.1",
        }
    }

    /// 14.0 and later report provisioning problems as command statuses instead of HTTP 449.
    pub fn uses_status_for_provisioning(self) -> bool {
        self >= ProtocolVersion::V14_0
    }
}

impl fmt::Display for ProtocolVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `MS-ASProtocolVersions` header value.
pub fn versions_header() -> String {
    ALL_VERSIONS
        .iter()
        .map(|v| v.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_and_bytes() {
        assert_eq!(versions_header(), "12.0,12.1,14.0,14.1,16.0,16.1");
        assert_eq!(
            ProtocolVersion::from_byte(141),
            Some(ProtocolVersion::V14_1)
        );
        assert_eq!(ProtocolVersion::from_byte(25), None);
        assert_eq!(ProtocolVersion::parse("16.1"), Some(ProtocolVersion::V16_1));
        assert_eq!(ProtocolVersion::parse("2.5"), None);
        assert!(ProtocolVersion::V12_1 < ProtocolVersion::V14_0);
    }
}
