//! Local staged todo API: the same HTTP contract as the Lambda behind API
//! Gateway (see `api/openapi.yaml`), backed by SQLite, for development, demos
//! and end-to-end tests.
//!
//! The first path segment is the API Gateway stage (`/{stage}/todos`), so a
//! front end can switch between this server and the real API by changing only
//! its base URL. Each stage's data is kept separate.
//!
//! The binary `todo-api` (`src/main.rs`) only parses arguments and serves
//! [`router`]; everything testable lives here.

pub mod error;
pub mod model;
pub mod page;
mod routes;
pub mod store;

pub use error::ApiError;
pub use model::{Stage, Title, Todo};
pub use page::{Cursor, Limit, Page, PageQueryError};
pub use routes::{Cors, router, router_with};
pub use store::{
    StageConfigError, Store, StoreError, TableSource, create_dynamodb_table, is_valid_table_name,
};
