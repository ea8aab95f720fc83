//! What a sync key stands for: the device's view of one folder.
//!
//! A view is the UIDVALIDITY, the compact set of UIDs the device holds, the HIGHESTMODSEQ up to
//! which it has seen flag changes, and the start of its FilterType window. Without a usable
//! CONDSTORE the view also keeps a few flag bits per UID, so flag changes can be found by
//! comparing. With CONDSTORE, while more flag Changes are pending than one window holds, the
//! view keeps the bits of the Changes already sent (`sent`), so the next window sends the
//! others instead of the same ones again (the view's HIGHESTMODSEQ stays until all are sent).

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
    /// With mod-sequences: flag bits of the Changes sent since `highest_modseq`, while some
    /// are still pending (stored as the flags text with a `sent:` prefix).
    pub sent: Option<HashMap<u32, u8>>,
    pub filter_start: Option<i64>,
    pub more_available: bool,
}

impl View {
    pub fn decode(v: &CollectionView) -> Option<View> {
        let uids = UidSet::parse(&v.uids).ok()?;
        let (flags, sent) = match v.flags.as_deref() {
            None => (None, None),
            Some(text) => match text.strip_prefix(SENT_PREFIX) {
                Some(rest) => (None, Some(decode_bits(rest)?)),
                None => (Some(decode_bits(text)?), None),
            },
        };
        Some(View {
            key: v.key,
            uid_validity: v.uid_validity,
            uids,
            highest_modseq: v.highest_modseq,
            flags,
            sent,
            filter_start: v.filter_start,
            more_available: v.more_available,
        })
    }

    pub fn encode(&self) -> CollectionView {
        let flags = match (&self.flags, &self.sent) {
            (Some(m), _) => Some(encode_bits(m)),
            (None, Some(m)) => Some(format!("{SENT_PREFIX}{}", encode_bits(m))),
            (None, None) => None,
        };
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

/// Marks a stored flags text as [`View::sent`].
const SENT_PREFIX: &str = "sent:";

fn decode_bits(text: &str) -> Option<HashMap<u32, u8>> {
    let mut map = HashMap::new();
    for part in text.split(',').filter(|p| !p.is_empty()) {
        let (u, b) = part.split_once('=')?;
        map.insert(u.parse().ok()?, b.parse().ok()?);
    }
    Some(map)
}

fn encode_bits(m: &HashMap<u32, u8>) -> String {
    let mut pairs: Vec<_> = m.iter().collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(u, b)| format!("{u}={b}"))
        .collect::<Vec<_>>()
        .join(",")
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
            sent: None,
            filter_start: Some(86_400),
            more_available: true,
        };
        assert_eq!(View::decode(&v.encode()), Some(v.clone()));
        let partial = View {
            flags: None,
            sent: Some([(3u32, 1u8)].into_iter().collect()),
            ..v
        };
        assert_eq!(View::decode(&partial.encode()), Some(partial));
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
