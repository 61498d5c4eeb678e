//! The frame of every message between servers:
//!
//! ```text
//! [version: u8][kind: u8][origin server id: 16 ASCII bytes][body]
//! ```
//!
//! The fixed header lets a server drop its own messages (a server hears its
//! own publications on every room it also has sockets in) and route
//! responses without decoding the body. Bodies are MessagePack:
//! - `Broadcast`: the `BroadcastOptions` of this copy, then the `Packet`. The
//!   packet is encoded once per broadcast and shared by every copy;
//! - `Request`: socketioxide-core's `RequestOut` (fetch sockets, rooms,
//!   disconnect, broadcast with acks, remote joins and leaves);
//! - `Response`: `(request id, Response)`.

use socketioxide_core::{Sid, Uid};

/// Bumped when the layout changes; frames of another version are dropped.
pub(crate) const VERSION: u8 = 1;
const SID_LEN: usize = 16;
const HEADER_LEN: usize = 2 + SID_LEN;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Broadcast = 0,
    Request = 1,
    Response = 2,
}

impl Kind {
    fn from_u8(b: u8) -> Option<Self> {
        match b {
            0 => Some(Self::Broadcast),
            1 => Some(Self::Request),
            2 => Some(Self::Response),
            _ => None,
        }
    }
}

/// A frame's header written into a buffer with room for `body_len` more bytes.
pub(crate) fn header(kind: Kind, origin: Uid, body_len: usize) -> Vec<u8> {
    let mut buf = Vec::with_capacity(HEADER_LEN + body_len);
    buf.push(VERSION);
    buf.push(kind as u8);
    buf.extend_from_slice(origin.as_str().as_bytes());
    buf
}

/// A received frame, borrowed from the message bytes.
#[derive(Debug)]
pub(crate) struct Frame<'a> {
    pub kind: Kind,
    origin: &'a [u8],
    pub body: &'a [u8],
}

impl Frame<'_> {
    /// Whether `uid` sent this frame (compared as bytes: nothing is decoded).
    pub fn is_from(&self, uid: Uid) -> bool {
        self.origin == uid.as_str().as_bytes()
    }
}

/// Splits a frame; `None` for anything this version cannot read.
pub(crate) fn parse(frame: &[u8]) -> Option<Frame<'_>> {
    if frame.len() < HEADER_LEN || frame[0] != VERSION {
        return None;
    }
    Some(Frame {
        kind: Kind::from_u8(frame[1])?,
        origin: &frame[2..HEADER_LEN],
        body: &frame[HEADER_LEN..],
    })
}

/// The request id at the front of a response body (`[Sid, ...]`), read
/// without decoding the rest, to route it to the stream that waits for it.
pub(crate) fn response_id(body: &[u8]) -> Option<Sid> {
    let mut rd = body;
    let len = rmp::decode::read_array_len(&mut rd).ok()?;
    if len < 1 {
        return None;
    }
    let mut buf = [0u8; SID_LEN];
    let id = rmp::decode::read_str(&mut rd, &mut buf).ok()?;
    id.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_reads_back_its_header() {
        let uid = Uid::new();
        let mut buf = header(Kind::Response, uid, 3);
        buf.extend_from_slice(b"abc");
        let frame = parse(&buf).expect("a frame");
        assert_eq!(frame.kind, Kind::Response);
        assert!(frame.is_from(uid));
        assert!(!frame.is_from(Uid::new()));
        assert_eq!(frame.body, b"abc");
    }

    #[test]
    fn short_foreign_and_unknown_frames_are_refused() {
        assert!(parse(b"").is_none());
        assert!(parse(&[VERSION, 0, b'x']).is_none());
        let mut other_version = header(Kind::Broadcast, Uid::new(), 0);
        other_version[0] = VERSION + 1;
        assert!(parse(&other_version).is_none());
        let mut unknown_kind = header(Kind::Broadcast, Uid::new(), 0);
        unknown_kind[1] = 9;
        assert!(parse(&unknown_kind).is_none());
    }

    #[test]
    fn the_response_id_is_read_without_the_rest() {
        let id = Sid::new();
        let body = rmp_serde::to_vec(&(id, "anything", 42)).expect("encodes");
        assert_eq!(response_id(&body), Some(id));
        assert_eq!(response_id(b""), None);
        assert_eq!(
            response_id(&rmp_serde::to_vec(&("not a sid",)).expect("encodes")),
            None
        );
    }
}
