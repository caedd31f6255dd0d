//! Persistence behind one interface, with two implementations:
//!
//! - SQLite ([`Store::open`]): the embedded default of `todo-api`, no AWS needed;
//! - DynamoDB ([`Store::dynamodb`]): what the Lambda function uses, one table per
//!   API Gateway stage (see `dynamodb.rs` for the table design).
//!
//! Handlers only ever see [`Store`]; which backend answers is decided when the
//! store is built (and, for a stage-variable table, per request by
//! [`Store::for_request`]).

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;

use crate::model::{Stage, Title, Todo, TodoChanges};
use crate::page::{Cursor, Limit, Page};

mod dynamodb;
mod sqlite;

pub use dynamodb::{TableSource, create_table as create_dynamodb_table, is_valid_table_name};

/// A boxed, sendable future: what [`Backend`] methods return so the trait can
/// be used as `dyn Backend`.
pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A storage fault. These are server-side problems and map to HTTP 500.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("SQLite error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The blocking worker panicked or was cancelled, or a previous panic
    /// poisoned the connection lock.
    #[error("storage worker failed: {0}")]
    WorkerFailed(String),
    /// A DynamoDB request failed (after the SDK's own retries).
    #[error("DynamoDB {operation} on table {table} failed: {detail}")]
    Dynamo {
        operation: &'static str,
        table: String,
        detail: String,
    },
    /// An item in the table does not have the shape this code writes.
    #[error("item {key} in table {table} is malformed: {problem}")]
    MalformedItem {
        table: String,
        key: String,
        problem: String,
    },
}

/// Why a request cannot be given a store: the deployment is wrong, not the
/// request (HTTP 500, with a message naming what to fix).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StageConfigError {
    #[error(
        "the API Gateway stage {stage:?} has no stage variable {variable:?}; set it to the stage's DynamoDB table name"
    )]
    MissingVariable { stage: String, variable: String },
    #[error(
        "the API Gateway stage {stage:?} sets the stage variable {variable:?} to {value:?}, which is not a DynamoDB table name (3-255 characters of a-z, A-Z, 0-9, '_', '-', '.')"
    )]
    InvalidTable {
        stage: String,
        variable: String,
        value: String,
    },
}

/// The operations every backend implements, with the same meaning (see
/// `api/openapi.yaml`): pages of the list in creation order, stage isolation,
/// toggle-all and clear-completed.
pub(crate) trait Backend: Send + Sync + 'static {
    /// At most `limit` todos of `stage` in list order (`createdAt`, then `id`),
    /// starting just after `after` (from the first todo when `None`), read with
    /// one bounded query, never the whole list; `next` is set exactly when more
    /// todos follow.
    fn list_page<'a>(
        &'a self,
        stage: &'a Stage,
        limit: Limit,
        after: Option<&'a Cursor>,
    ) -> BoxFuture<'a, Result<Page, StoreError>>;
    fn create<'a>(
        &'a self,
        stage: &'a Stage,
        title: Title,
        completed: bool,
    ) -> BoxFuture<'a, Result<Todo, StoreError>>;
    fn get<'a>(
        &'a self,
        stage: &'a Stage,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Option<Todo>, StoreError>>;
    fn update<'a>(
        &'a self,
        stage: &'a Stage,
        id: &'a str,
        changes: TodoChanges,
    ) -> BoxFuture<'a, Result<Option<Todo>, StoreError>>;
    fn delete<'a>(
        &'a self,
        stage: &'a Stage,
        id: &'a str,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;
    /// Sets `completed` on every todo of `stage`; returns how many todos this
    /// call changed (those already in that state are not counted).
    fn set_all_completed<'a>(
        &'a self,
        stage: &'a Stage,
        completed: bool,
    ) -> BoxFuture<'a, Result<usize, StoreError>>;
    fn delete_completed<'a>(&'a self, stage: &'a Stage)
    -> BoxFuture<'a, Result<usize, StoreError>>;

    /// The backend for one request, given the API Gateway stage that received it
    /// (`None` outside Lambda) and a lookup of its stage variables.
    /// `Ok(None)`: this backend serves every request as it is.
    fn for_request(
        &self,
        _gateway_stage: Option<&str>,
        _stage_variable: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<Arc<dyn Backend>>, StageConfigError> {
        Ok(None)
    }
}

/// Handle to the todo storage; cheap to clone (shared connection or client).
#[derive(Clone)]
pub struct Store {
    backend: Arc<dyn Backend>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (creating if needed) the SQLite database file at `path` and its schema.
    /// The special path `:memory:` gives a private in-memory database.
    pub fn open(path: impl AsRef<Path>) -> Result<Store, StoreError> {
        Ok(Store::from_backend(sqlite::Sqlite::open(path.as_ref())?))
    }

    /// A fresh private in-memory SQLite database, for tests and throwaway demos.
    pub fn open_in_memory() -> Result<Store, StoreError> {
        Ok(Store::from_backend(sqlite::Sqlite::open_in_memory()?))
    }

    /// DynamoDB through `client`, in the table `table` names (a fixed table, or
    /// the one a stage variable of each request names).
    pub fn dynamodb(client: aws_sdk_dynamodb::Client, table: TableSource) -> Store {
        Store::from_backend(dynamodb::Dynamo::new(client, table))
    }

    fn from_backend(backend: impl Backend) -> Store {
        Store {
            backend: Arc::new(backend),
        }
    }

    /// The store that serves one request. For a DynamoDB store whose table comes
    /// from a stage variable this picks the table of `gateway_stage`; every other
    /// store answers with itself.
    pub fn for_request(
        &self,
        gateway_stage: Option<&str>,
        stage_variable: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Store, StageConfigError> {
        Ok(
            match self.backend.for_request(gateway_stage, stage_variable)? {
                Some(backend) => Store { backend },
                None => self.clone(),
            },
        )
    }

    /// One page of `stage`'s list in creation order, starting just after `after`.
    pub async fn list_page(
        &self,
        stage: &Stage,
        limit: Limit,
        after: Option<&Cursor>,
    ) -> Result<Page, StoreError> {
        self.backend.list_page(stage, limit, after).await
    }

    /// All todos of `stage` in creation order, following every page: for tests
    /// and tools. The HTTP API serves pages ([`Store::list_page`]), so that no
    /// response grows with the list.
    pub async fn list(&self, stage: &Stage) -> Result<Vec<Todo>, StoreError> {
        let mut todos = Vec::new();
        let mut after = None;
        loop {
            let page = self.list_page(stage, Limit::MAX, after.as_ref()).await?;
            todos.extend(page.todos);
            match page.next {
                Some(next) => after = Some(next),
                None => return Ok(todos),
            }
        }
    }

    /// Inserts a new todo and returns it.
    pub async fn create(
        &self,
        stage: &Stage,
        title: Title,
        completed: bool,
    ) -> Result<Todo, StoreError> {
        self.backend.create(stage, title, completed).await
    }

    /// One todo, or `None` when `id` does not exist in `stage`.
    pub async fn get(&self, stage: &Stage, id: &str) -> Result<Option<Todo>, StoreError> {
        self.backend.get(stage, id).await
    }

    /// Applies `changes` to one todo; `None` when it does not exist.
    pub async fn update(
        &self,
        stage: &Stage,
        id: &str,
        changes: TodoChanges,
    ) -> Result<Option<Todo>, StoreError> {
        self.backend.update(stage, id, changes).await
    }

    /// Deletes one todo; `false` when it did not exist.
    pub async fn delete(&self, stage: &Stage, id: &str) -> Result<bool, StoreError> {
        self.backend.delete(stage, id).await
    }

    /// Sets `completed` on every todo of `stage`; returns how many todos this
    /// call changed. Not the list: that would be one unbounded response again.
    pub async fn set_all_completed(
        &self,
        stage: &Stage,
        completed: bool,
    ) -> Result<usize, StoreError> {
        self.backend.set_all_completed(stage, completed).await
    }

    /// Deletes every completed todo of `stage`; returns how many were deleted.
    pub async fn delete_completed(&self, stage: &Stage) -> Result<usize, StoreError> {
        self.backend.delete_completed(stage).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stage(s: &str) -> Stage {
        Stage::parse(s).unwrap()
    }

    #[tokio::test]
    async fn crud_round_trip_in_memory() {
        let store = Store::open(":memory:").unwrap();
        let dev = stage("dev");
        let a = store
            .create(&dev, Title::parse("a").unwrap(), false)
            .await
            .unwrap();
        let b = store
            .create(&dev, Title::parse("b").unwrap(), true)
            .await
            .unwrap();
        assert_eq!(store.list(&dev).await.unwrap(), vec![a.clone(), b.clone()]);
        assert!(store.list(&stage("prod")).await.unwrap().is_empty());

        let changed = store
            .update(
                &dev,
                &a.id,
                TodoChanges {
                    title: None,
                    completed: Some(true),
                },
            )
            .await
            .unwrap()
            .unwrap();
        assert!(changed.completed);
        assert_eq!(changed.title, "a");
        assert_eq!(store.delete_completed(&dev).await.unwrap(), 2);
        assert!(!store.delete(&dev, &a.id).await.unwrap());
        assert!(store.get(&dev, &b.id).await.unwrap().is_none());
    }

    #[test]
    fn sqlite_ignores_stage_variables() {
        let store = Store::open_in_memory().unwrap();
        assert!(store.for_request(Some("dev"), &|_| None).is_ok());
        assert!(store.for_request(None, &|_| None).is_ok());
    }
}
