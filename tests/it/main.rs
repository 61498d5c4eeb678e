//! Every integration test of the node, in one binary: the crate and its
//! dependencies are linked once instead of once per file. Each module was a
//! test binary of its own; nextest still runs every test in its own process,
//! so process-wide state (the metrics recorder, the panic hook, the tracer)
//! stays per test.

#[macro_use]
mod common;

mod abuse;
mod browser;
mod client_contract;
mod cluster;
mod conformance;
mod ephemeral_contract;
mod fuzz;
mod history_paging;
mod load_balancer;
mod metrics_scrape;
mod notifications;
mod otlp_export;
mod outcomes;
mod presence;
mod resume_model;
mod retention;
mod service_rules;
mod store_contract;
mod supervision;
