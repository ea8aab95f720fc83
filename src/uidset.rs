//! Compact sets of IMAP UIDs, in the IMAP sequence-set form (`1:500,502,510:980`).
//!
//! A sync view stores the UIDs a device holds as one of these: a 50,000-mail folder costs a
//! few bytes when its UIDs are contiguous. Pure data, no I/O.

use std::fmt;

/// A set of UIDs as sorted, disjoint, non-adjacent inclusive ranges.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct UidSet {
    ranges: Vec<(u32, u32)>,
}

/// Text that is not a UID set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a UID set: {0}")]
pub struct UidSetError(pub String);

impl UidSet {
    pub fn new() -> UidSet {
        UidSet::default()
    }

    /// Builds a set from UIDs in any order (duplicates allowed).
    pub fn from_uids(uids: impl IntoIterator<Item = u32>) -> UidSet {
        let mut v: Vec<u32> = uids.into_iter().filter(|u| *u != 0).collect();
        v.sort_unstable();
        v.dedup();
        let mut ranges: Vec<(u32, u32)> = Vec::new();
        for u in v {
            match ranges.last_mut() {
                Some((_, hi)) if hi.checked_add(1) == Some(u) => *hi = u,
                _ => ranges.push((u, u)),
            }
        }
        UidSet { ranges }
    }

    /// Parses `1:5,7,9:12` (also accepts reversed ranges `5:1`; `*` is not allowed). The empty
    /// string is the empty set.
    pub fn parse(s: &str) -> Result<UidSet, UidSetError> {
        let s = s.trim();
        if s.is_empty() {
            return Ok(UidSet::new());
        }
        let mut ranges = Vec::new();
        for part in s.split(',') {
            let num = |t: &str| -> Result<u32, UidSetError> {
                t.trim()
                    .parse::<u32>()
                    .ok()
                    .filter(|n| *n != 0)
                    .ok_or_else(|| UidSetError(s.chars().take(64).collect()))
            };
            let (a, b) = match part.split_once(':') {
                Some((a, b)) => (num(a)?, num(b)?),
                None => {
                    let n = num(part)?;
                    (n, n)
                }
            };
            ranges.push((a.min(b), a.max(b)));
        }
        let mut set = UidSet { ranges };
        set.normalise();
        Ok(set)
    }

    fn normalise(&mut self) {
        self.ranges.sort_unstable();
        let mut out: Vec<(u32, u32)> = Vec::with_capacity(self.ranges.len());
        for (lo, hi) in self.ranges.drain(..) {
            match out.last_mut() {
                Some((_, phi)) if lo <= phi.saturating_add(1) => *phi = (*phi).max(hi),
                _ => out.push((lo, hi)),
            }
        }
        self.ranges = out;
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Number of UIDs in the set.
    pub fn len(&self) -> u64 {
        self.ranges
            .iter()
            .map(|(lo, hi)| u64::from(hi - lo) + 1)
            .sum()
    }

    pub fn contains(&self, uid: u32) -> bool {
        self.ranges
            .binary_search_by(|(lo, hi)| {
                if uid < *lo {
                    std::cmp::Ordering::Greater
                } else if uid > *hi {
                    std::cmp::Ordering::Less
                } else {
                    std::cmp::Ordering::Equal
                }
            })
            .is_ok()
    }

    pub fn insert(&mut self, uid: u32) {
        if uid == 0 || self.contains(uid) {
            return;
        }
        self.ranges.push((uid, uid));
        self.normalise();
    }

    pub fn remove(&mut self, uid: u32) {
        let mut out = Vec::with_capacity(self.ranges.len() + 1);
        for &(lo, hi) in &self.ranges {
            if uid < lo || uid > hi {
                out.push((lo, hi));
                continue;
            }
            if lo < uid {
                out.push((lo, uid - 1));
            }
            if uid < hi {
                out.push((uid + 1, hi));
            }
        }
        self.ranges = out;
    }

    /// UIDs in ascending order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = u32> + '_ {
        self.ranges.iter().flat_map(|&(lo, hi)| lo..=hi)
    }

    /// The ranges, for building IMAP commands.
    pub fn ranges(&self) -> &[(u32, u32)] {
        &self.ranges
    }

    /// `self \ other`.
    pub fn difference(&self, other: &UidSet) -> UidSet {
        let mut out = Vec::new();
        let mut j = 0;
        for &(lo, hi) in &self.ranges {
            let mut cur = lo;
            while other.ranges.get(j).is_some_and(|&(_, ohi)| ohi < cur) {
                j += 1;
            }
            let mut k = j;
            let mut done = false;
            while let Some(&(olo, ohi)) = other.ranges.get(k).filter(|&&(olo, _)| olo <= hi) {
                if olo > cur {
                    out.push((cur, olo - 1));
                }
                if ohi >= hi {
                    done = true;
                    break;
                }
                cur = cur.max(ohi + 1);
                k += 1;
            }
            if !done && cur <= hi {
                out.push((cur, hi));
            }
        }
        let mut s = UidSet { ranges: out };
        s.normalise();
        s
    }

    /// `self ∩ other`.
    pub fn intersection(&self, other: &UidSet) -> UidSet {
        self.difference(&self.difference(other))
    }

    /// `self ∪ other`.
    pub fn union(&self, other: &UidSet) -> UidSet {
        let mut s = UidSet {
            ranges: self
                .ranges
                .iter()
                .chain(other.ranges.iter())
                .copied()
                .collect(),
        };
        s.normalise();
        s
    }
}

impl fmt::Display for UidSet {
    /// The IMAP sequence-set form; the empty set prints as the empty string.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (lo, hi)) in self.ranges.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            if lo == hi {
                write!(f, "{lo}")?;
            } else {
                write!(f, "{lo}:{hi}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parse_and_print() {
        let s = UidSet::parse("5:1,7,9:12,8").unwrap();
        assert_eq!(s.to_string(), "1:5,7:12");
        assert_eq!(s.len(), 11);
        assert!(s.contains(3) && !s.contains(6));
        assert!(UidSet::parse("1:*").is_err());
        assert!(UidSet::parse("0").is_err());
        assert_eq!(UidSet::parse("").unwrap(), UidSet::new());
    }

    proptest! {
        #[test]
        fn set_ops_match_btreeset(a in proptest::collection::vec(1u32..200, 0..60),
                                  b in proptest::collection::vec(1u32..200, 0..60)) {
            use std::collections::BTreeSet;
            let (sa, sb) = (UidSet::from_uids(a.clone()), UidSet::from_uids(b.clone()));
            let (ba, bb): (BTreeSet<u32>, BTreeSet<u32>) = (a.into_iter().collect(), b.into_iter().collect());
            prop_assert_eq!(sa.difference(&sb).iter().collect::<Vec<_>>(), ba.difference(&bb).copied().collect::<Vec<_>>());
            prop_assert_eq!(sa.intersection(&sb).iter().collect::<Vec<_>>(), ba.intersection(&bb).copied().collect::<Vec<_>>());
            prop_assert_eq!(sa.union(&sb).iter().collect::<Vec<_>>(), ba.union(&bb).copied().collect::<Vec<_>>());
            prop_assert_eq!(UidSet::parse(&sa.to_string()).unwrap(), sa.clone());
            let mut r = sa.clone();
            if let Some(x) = ba.iter().next() { r.remove(*x); prop_assert!(!r.contains(*x)); r.insert(*x); prop_assert_eq!(r, sa); }
        }
    }
}
