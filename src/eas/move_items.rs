//! MoveItems (MS-ASCMD 2.2.1.12): move mails between folders.
//!
//! Note the status table (MS-ASCMD 2.2.3.177.10): 3 is success, 1 an invalid source.

use crate::wbxml::tags::move_items as m;
use crate::wbxml::Element;

use super::ParseError;

/// MoveItems status values (MS-ASCMD 2.2.3.177.10).
pub mod status {
    /// The source folder or the item in it does not exist.
    pub const INVALID_SOURCE: u32 = 1;
    pub const INVALID_DESTINATION: u32 = 2;
    pub const SUCCESS: u32 = 3;
    pub const SAME_SOURCE_AND_DESTINATION: u32 = 4;
    /// Any other failure (the mail server refused the move).
    pub const FAILURE: u32 = 5;
    /// The source or destination is locked: retry later.
    pub const LOCKED: u32 = 7;
}

/// Most Move elements honoured in one request (MS-ASCMD 3.1.5.10 advises clients to send no
/// more than 1000).
pub const MAX_MOVES: usize = 1000;

/// One Move element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoveRequest {
    pub src_msg_id: String,
    pub src_fld_id: String,
    pub dst_fld_id: String,
}

/// Decodes a MoveItems request: its Move elements, in order.
pub fn parse(root: &Element) -> Result<Vec<MoveRequest>, ParseError> {
    if root.tag != m::MOVE_ITEMS {
        return Err(ParseError::new(
            "MoveItems",
            "root element is not MoveItems",
        ));
    }
    let mut out = Vec::new();
    for mv in root.all(m::MOVE) {
        let text = |tag, what: &str| -> Result<String, ParseError> {
            mv.text_of(tag)
                .map(|t| t.trim().to_string())
                .filter(|t| !t.is_empty())
                .ok_or_else(|| ParseError::new("MoveItems", format!("Move without {what}")))
        };
        out.push(MoveRequest {
            src_msg_id: text(m::SRC_MSG_ID, "SrcMsgId")?,
            src_fld_id: text(m::SRC_FLD_ID, "SrcFldId")?,
            dst_fld_id: text(m::DST_FLD_ID, "DstFldId")?,
        });
    }
    if out.is_empty() {
        return Err(ParseError::new("MoveItems", "no Move element"));
    }
    if out.len() > MAX_MOVES {
        return Err(ParseError::new("MoveItems", "too many Move elements"));
    }
    Ok(out)
}

/// The answer to one Move.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoveResult {
    pub src_msg_id: String,
    pub status: u32,
    /// The mail's ServerId in the destination (success only).
    pub dst_msg_id: Option<String>,
}

/// A whole MoveItems response: one Response per Move, in request order, children in schema
/// order SrcMsgId, Status, DstMsgId.
pub fn response(results: &[MoveResult]) -> Element {
    let mut root = Element::new(m::MOVE_ITEMS);
    for r in results {
        let mut e = Element::new(m::RESPONSE)
            .text_child(m::SRC_MSG_ID, r.src_msg_id.clone())
            .text_child(m::STATUS, r.status.to_string());
        if let Some(d) = &r.dst_msg_id {
            e.push(Element::with_text(m::DST_MSG_ID, d.clone()));
        }
        root.push(e);
    }
    root
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mv(src: &str, sf: &str, df: &str) -> Element {
        Element::new(m::MOVE)
            .text_child(m::SRC_MSG_ID, src)
            .text_child(m::SRC_FLD_ID, sf)
            .text_child(m::DST_FLD_ID, df)
    }

    #[test]
    fn parses_moves_in_order() {
        let req = Element::new(m::MOVE_ITEMS)
            .child(mv("5:1", "5", "7"))
            .child(mv(" 5:2 ", "5", "8"));
        let moves = parse(&req).unwrap();
        assert_eq!(moves.len(), 2);
        assert_eq!(moves[1].src_msg_id, "5:2");
        assert_eq!(moves[1].dst_fld_id, "8");
    }

    #[test]
    fn rejects_incomplete_moves() {
        let req = Element::new(m::MOVE_ITEMS).child(
            Element::new(m::MOVE)
                .text_child(m::SRC_MSG_ID, "5:1")
                .text_child(m::SRC_FLD_ID, "5"),
        );
        assert!(parse(&req).is_err());
        assert!(parse(&Element::new(m::MOVE_ITEMS)).is_err());
        assert!(parse(&Element::new(m::MOVE)).is_err());
    }

    #[test]
    fn response_order_and_optional_dst() {
        let e = response(&[
            MoveResult {
                src_msg_id: "5:1".into(),
                status: status::SUCCESS,
                dst_msg_id: Some("7:40".into()),
            },
            MoveResult {
                src_msg_id: "5:2".into(),
                status: status::INVALID_SOURCE,
                dst_msg_id: None,
            },
        ]);
        let rs: Vec<&Element> = e.all(m::RESPONSE).collect();
        assert_eq!(rs.len(), 2);
        let tags: Vec<_> = rs[0].elements().map(|c| c.tag).collect();
        assert_eq!(tags, vec![m::SRC_MSG_ID, m::STATUS, m::DST_MSG_ID]);
        assert_eq!(rs[1].text_of(m::STATUS), Some("1"));
        assert!(rs[1].first(m::DST_MSG_ID).is_none());
    }
}
