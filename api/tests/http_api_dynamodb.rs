//! The contract suite of `http_api.rs`, unchanged, against the DynamoDB store on
//! moto: in this test binary `common::Server::in_memory` gives every test a fresh
//! table (see `common::dynamodb_wanted`). Tests that open a SQLite file by name
//! (persistence across restarts) still use SQLite.

#[path = "http_api.rs"]
mod contract;
