//! Socket.IO edge: authenticate the handshake, parse payloads, call the
//! service, ack. No SQL, no Redis, no business rules.

mod connect;
mod events;
mod expiry;
mod respond;
mod socket_state;

pub use connect::{HandshakeRefusal, authenticate, on_connect};
pub use events::InFlight;
pub use expiry::{Expiries, ExpiryWheel, expiries};
pub use socket_state::SocketState;
