//! What the smuggling tests (`tests/smuggling.rs`) need beyond the common harness: a strict
//! HTTP/1.1 parser (`wire`), a backend that parses rgate's output with it and records every
//! message (`strict_backend`), a client that reads rgate's responses with it
//! (`strict_client`), the request and response corpora (`corpus`), and the checks
//! applied to what crossed rgate (`verdict`).

pub mod corpus;
pub mod strict_backend;
pub mod strict_client;
pub mod verdict;
pub mod wire;
