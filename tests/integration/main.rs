//! Pigeon's integration tests: one binary, each test a user's story against the real app,
//! PostgreSQL and Redis.

mod util;

mod cli;
mod delivery;
mod durability;
mod errors;
mod js_client;
mod resources;
mod supervision;
mod websocket;
