//! parloir: a horizontally scalable realtime messaging node.
//!
//! Layers (data flows down only): `gateway` (Socket.IO) and `http` call
//! `service`, which holds every rule once and calls `store` (durable),
//! `ephemeral` (presence, typing, counters, rate limits) and `fanout`
//! (room broadcasts). `app` wires one mode together; `main.rs` is a thin CLI.

pub mod app;
pub mod auth;
pub mod budget;
pub mod client_contract;
pub mod clock;
pub mod config;
pub mod domain;
pub mod ephemeral;
pub mod fanout;
pub mod gateway;
pub mod http;
pub mod instruments;
pub mod notify;
mod observed;
pub mod protocol;
pub mod service;
pub mod store;
pub mod supervisor;
pub mod telemetry;

pub use app::{App, AppBuilder};
pub use config::Config;
