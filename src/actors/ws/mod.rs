//! WebSocket push: the node's [`hub::Hub`] (which sessions want which pushes, fed by the
//! engine's pub/sub so a push published on any node reaches sessions on every node) and one
//! [`session::WsSession`] actor per connected browser or app client. The wire format and the
//! stream keys are in `protocol.rs`. All WebSocket code lives here (and in `api/ws.rs` for the
//! upgrade), so a move from actix-web-actors to another library stays a local change.

pub mod hub;
pub mod protocol;
pub mod session;
