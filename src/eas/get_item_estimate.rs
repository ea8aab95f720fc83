//! GetItemEstimate (MS-ASCMD 2.2.1.9): how many changes the next Sync of each collection would
//! send.
//!
//! 14.0+ puts the filter in `airsync:Options` (with an optional `airsync:Class`); 12.x puts
//! `Class` and `airsync:FilterType` straight into the Collection. Both are read.

use crate::wbxml::tags::{airsync as a, get_item_estimate as g};
use crate::wbxml::Element;

use super::ParseError;

/// GetItemEstimate status values (MS-ASCMD 2.2.3.177.7).
pub mod status {
    pub const SUCCESS: u32 = 1;
    pub const INVALID_COLLECTION: u32 = 2;
    /// The collection has not been synced yet (its key is 0).
    pub const NOT_PRIMED: u32 = 3;
    pub const INVALID_SYNC_KEY: u32 = 4;
}

/// Most Collection elements in one request (MS-ASCMD 2.2.3.31.1).
pub const MAX_COLLECTIONS: usize = 300;

/// One Collection of the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EstimateRequest {
    pub collection_id: String,
    /// Empty when absent.
    pub sync_key: String,
    /// The Options element for mail (14.0+), as sent.
    pub options: Option<Element>,
    /// FilterType given outside Options (12.x).
    pub filter_type: Option<u32>,
}

/// Decodes a GetItemEstimate request.
pub fn parse(root: &Element) -> Result<Vec<EstimateRequest>, ParseError> {
    let err = |why: &str| ParseError::new("GetItemEstimate", why);
    if root.tag != g::GET_ITEM_ESTIMATE {
        return Err(err("root element is not GetItemEstimate"));
    }
    let cols = root
        .first(g::COLLECTIONS)
        .ok_or_else(|| err("Collections missing"))?;
    let mut out = Vec::new();
    for c in cols.all(g::COLLECTION) {
        let collection_id = c
            .text_of(g::COLLECTION_ID)
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| err("Collection without CollectionId"))?;
        let sync_key = c
            .text_of(a::SYNC_KEY)
            .map(|t| t.trim().to_string())
            .unwrap_or_default();
        // Several Options may be sent, one per class: take the one for mail (no Class, or
        // Class Email), else the first.
        let options = c
            .all(a::OPTIONS)
            .find(|o| o.text_of(a::CLASS).is_none_or(|k| k.trim() == "Email"))
            .or_else(|| c.first(a::OPTIONS))
            .cloned();
        let filter_type = match c.first(a::FILTER_TYPE) {
            Some(f) => Some(
                f.text()
                    .unwrap_or("")
                    .trim()
                    .parse()
                    .map_err(|_| err("FilterType is not a number"))?,
            ),
            None => None,
        };
        out.push(EstimateRequest {
            collection_id,
            sync_key,
            options,
            filter_type,
        });
    }
    if out.is_empty() {
        return Err(err("no Collection"));
    }
    if out.len() > MAX_COLLECTIONS {
        return Err(err("too many collections"));
    }
    Ok(out)
}

/// The answer for one collection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Estimate {
    pub collection_id: String,
    pub status: u32,
    /// Success only.
    pub estimate: Option<u64>,
}

/// A whole response: one Response per collection, in request order.
pub fn response(estimates: &[Estimate]) -> Element {
    let mut root = Element::new(g::GET_ITEM_ESTIMATE);
    for e in estimates {
        let mut col =
            Element::new(g::COLLECTION).text_child(g::COLLECTION_ID, e.collection_id.clone());
        if let Some(n) = e.estimate {
            col.push(Element::with_text(g::ESTIMATE, n.to_string()));
        }
        root.push(
            Element::new(g::RESPONSE)
                .text_child(g::STATUS, e.status.to_string())
                .child(col),
        );
    }
    root
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_14_and_12_forms() {
        let req = Element::new(g::GET_ITEM_ESTIMATE).child(
            Element::new(g::COLLECTIONS)
                .child(
                    Element::new(g::COLLECTION)
                        .text_child(a::SYNC_KEY, "4")
                        .text_child(g::COLLECTION_ID, "5")
                        .child(
                            Element::new(a::OPTIONS)
                                .text_child(a::CLASS, "Email")
                                .text_child(a::FILTER_TYPE, "3"),
                        ),
                )
                .child(
                    Element::new(g::COLLECTION)
                        .text_child(g::CLASS, "Email")
                        .text_child(g::COLLECTION_ID, "6")
                        .text_child(a::FILTER_TYPE, "2")
                        .text_child(a::SYNC_KEY, "0"),
                ),
        );
        let cols = parse(&req).unwrap();
        assert_eq!(cols.len(), 2);
        assert_eq!(cols[0].sync_key, "4");
        assert_eq!(
            cols[0]
                .options
                .as_ref()
                .and_then(|o| o.text_of(a::FILTER_TYPE)),
            Some("3")
        );
        assert_eq!(cols[1].filter_type, Some(2));
        assert_eq!(cols[1].sync_key, "0");
        assert!(cols[1].options.is_none());
    }

    #[test]
    fn rejects_malformed() {
        assert!(parse(&Element::new(g::GET_ITEM_ESTIMATE)).is_err());
        let no_id = Element::new(g::GET_ITEM_ESTIMATE).child(
            Element::new(g::COLLECTIONS)
                .child(Element::new(g::COLLECTION).text_child(a::SYNC_KEY, "1")),
        );
        assert!(parse(&no_id).is_err());
    }

    #[test]
    fn response_shape() {
        let e = response(&[
            Estimate {
                collection_id: "5".into(),
                status: status::SUCCESS,
                estimate: Some(12),
            },
            Estimate {
                collection_id: "9".into(),
                status: status::INVALID_COLLECTION,
                estimate: None,
            },
        ]);
        let rs: Vec<&Element> = e.all(g::RESPONSE).collect();
        assert_eq!(rs[0].text_of(g::STATUS), Some("1"));
        let c = rs[0].first(g::COLLECTION).unwrap();
        assert_eq!(c.text_of(g::ESTIMATE), Some("12"));
        assert!(rs[1]
            .first(g::COLLECTION)
            .unwrap()
            .first(g::ESTIMATE)
            .is_none());
    }
}
