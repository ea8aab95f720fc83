//! What a sync key stands for: the device's view of one folder.
//!
//! A view is the UIDVALIDITY, the compact set of UIDs the device holds, the HIGHESTMODSEQ up to
//! which it has seen flag changes, and the start of its FilterType window. Without a usable
//! CONDSTORE the view also keeps a few flag bits per UID, so flag changes can be found by
//! comparing.

use std::collections::HashMap;

use crate::state::CollectionView;
use crate::uidset::UidSet;

pub use crate::commands::collection_view::{
    flag_bits, window_start, ANSWERED, FLAGGED, FORWARDED, SEEN,
};

/// A decoded [`CollectionView`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View {
    pub key: u32,
    pub uid_validity: u32,
    pub uids: UidSet,
    pub highest_modseq: u64,
    /// Flag bits per UID, only when the server gives no mod-sequences.
    pub flags: Option<HashMap<u32, u8>>,
    pub filter_start: Option<i64>,
    pub more_available: bool,
}

impl View {
    pub fn decode(v: &CollectionView) -> Option<View> {
        let uids = UidSet::parse(&v.uids).ok()?;
        let flags = match &v.flags {
            None => None,
            Some(text) => {
                let mut map = HashMap::new();
                for part in text.split(',').filter(|p| !p.is_empty()) {
                    let (u, b) = part.split_once('=')?;
                    map.insert(u.parse().ok()?, b.parse().ok()?);
                }
                Some(map)
            }
        };
        Some(View {
            key: v.key,
            uid_validity: v.uid_validity,
            uids,
            highest_modseq: v.highest_modseq,
            flags,
            filter_start: v.filter_start,
            more_available: v.more_available,
        })
    }

    pub fn encode(&self) -> CollectionView {
        let flags = self.flags.as_ref().map(|m| {
            let mut pairs: Vec<_> = m.iter().collect();
            pairs.sort();
            pairs
                .iter()
                .map(|(u, b)| format!("{u}={b}"))
                .collect::<Vec<_>>()
                .join(",")
        });
        CollectionView {
            key: self.key,
            uid_validity: self.uid_validity,
            uids: self.uids.to_string(),
            highest_modseq: self.highest_modseq,
            flags,
            filter_start: self.filter_start,
            more_available: self.more_available,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn view_round_trips_through_storage() {
        let v = View {
            key: 4,
            uid_validity: 77,
            uids: UidSet::parse("1:10,12").unwrap(),
            highest_modseq: 900,
            flags: Some([(1u32, 3u8), (12, 0)].into_iter().collect()),
            filter_start: Some(86_400),
            more_available: true,
        };
        assert_eq!(View::decode(&v.encode()), Some(v));
    }

    #[test]
    fn window_moves_once_a_day() {
        let a = window_start(Some(3), 10 * 86_400 + 5).unwrap();
        let b = window_start(Some(3), 10 * 86_400 + 80_000).unwrap();
        assert_eq!(a, b);
        assert_eq!(a, 7 * 86_400);
        assert_eq!(window_start(None, 5), None);
    }
}
