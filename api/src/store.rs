//! SQLite persistence.
//!
//! One connection behind a mutex is plenty for a local development server and
//! makes every operation trivially serialisable. SQLite calls block, so every
//! operation runs inside `tokio::task::spawn_blocking` to keep the async
//! runtime's worker threads free for other requests.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::model::{Stage, Title, Todo, TodoChanges, new_id, now_timestamp};

/// A storage fault. These are server-side problems and map to HTTP 500.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("SQLite error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The blocking worker panicked or was cancelled, or a previous panic
    /// poisoned the connection lock.
    #[error("storage worker failed: {0}")]
    WorkerFailed(String),
}

/// Every stage lives in the same table, keyed by `(stage, id)`, so stages are
/// isolated by construction of every query's `WHERE stage = ?`.
/// `created_at` is fixed-width RFC 3339 text, so ordering by it is time order;
/// `rowid` breaks ties between todos created within the same millisecond.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS todos (
    stage      TEXT    NOT NULL,
    id         TEXT    NOT NULL,
    title      TEXT    NOT NULL,
    completed  INTEGER NOT NULL DEFAULT 0 CHECK (completed IN (0, 1)),
    created_at TEXT    NOT NULL,
    PRIMARY KEY (stage, id)
);
CREATE INDEX IF NOT EXISTS todos_stage_created ON todos (stage, created_at);
";

const COLUMNS: &str = "id, title, completed, created_at";
const LIST_SQL: &str = "SELECT id, title, completed, created_at FROM todos WHERE stage = ?1 ORDER BY created_at, rowid";

/// Handle to the todo database; cheap to clone (shared connection).
#[derive(Clone)]
pub struct Store {
    conn: Arc<Mutex<Connection>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (creating if needed) the database file at `path` and its schema.
    /// The special path `:memory:` gives a private in-memory database.
    pub fn open(path: impl AsRef<Path>) -> Result<Store, StoreError> {
        let path = path.as_ref();
        if path.as_os_str() == ":memory:" {
            return Self::open_in_memory();
        }
        let conn = Connection::open(path)?;
        // WAL lets a second process (e.g. a test inspecting the file) read while
        // we write; the busy timeout rides out short locks instead of failing.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        Self::init(conn)
    }

    /// A fresh private in-memory database, for tests and throwaway demos.
    pub fn open_in_memory() -> Result<Store, StoreError> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(conn: Connection) -> Result<Store, StoreError> {
        conn.busy_timeout(Duration::from_secs(5))?;
        conn.execute_batch(SCHEMA)?;
        Ok(Store {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Runs `f` with the connection on the blocking thread pool.
    async fn with_conn<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, rusqlite::Error> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            let mut guard = conn
                .lock()
                .map_err(|_| StoreError::WorkerFailed("the connection lock is poisoned".into()))?;
            f(&mut guard).map_err(StoreError::from)
        })
        .await
        .map_err(|e| StoreError::WorkerFailed(e.to_string()))?
    }

    /// All todos of `stage` in creation order.
    pub async fn list(&self, stage: &Stage) -> Result<Vec<Todo>, StoreError> {
        let stage = stage.as_str().to_owned();
        self.with_conn(move |conn| list_in(conn, &stage)).await
    }

    /// Inserts a new todo and returns it.
    pub async fn create(
        &self,
        stage: &Stage,
        title: Title,
        completed: bool,
    ) -> Result<Todo, StoreError> {
        let stage = stage.as_str().to_owned();
        let todo = Todo {
            id: new_id(),
            title: title.into_string(),
            completed,
            created_at: now_timestamp(),
        };
        self.with_conn(move |conn| {
            conn.execute(
                "INSERT INTO todos (stage, id, title, completed, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![stage, todo.id, todo.title, todo.completed, todo.created_at],
            )?;
            Ok(todo)
        })
        .await
    }

    /// One todo, or `None` when `id` does not exist in `stage`.
    pub async fn get(&self, stage: &Stage, id: &str) -> Result<Option<Todo>, StoreError> {
        let (stage, id) = (stage.as_str().to_owned(), id.to_owned());
        self.with_conn(move |conn| {
            conn.query_row(
                &format!("SELECT {COLUMNS} FROM todos WHERE stage = ?1 AND id = ?2"),
                params![stage, id],
                todo_from_row,
            )
            .optional()
        })
        .await
    }

    /// Applies `changes` to one todo; `None` when it does not exist.
    pub async fn update(
        &self,
        stage: &Stage,
        id: &str,
        changes: TodoChanges,
    ) -> Result<Option<Todo>, StoreError> {
        let (stage, id) = (stage.as_str().to_owned(), id.to_owned());
        let title = changes.title.map(Title::into_string);
        let completed = changes.completed;
        self.with_conn(move |conn| {
            conn.query_row(
                &format!(
                    "UPDATE todos SET title = COALESCE(?3, title), completed = COALESCE(?4, completed)
                     WHERE stage = ?1 AND id = ?2 RETURNING {COLUMNS}"
                ),
                params![stage, id, title, completed],
                todo_from_row,
            )
            .optional()
        })
        .await
    }

    /// Deletes one todo; `false` when it did not exist.
    pub async fn delete(&self, stage: &Stage, id: &str) -> Result<bool, StoreError> {
        let (stage, id) = (stage.as_str().to_owned(), id.to_owned());
        self.with_conn(move |conn| {
            let n = conn.execute(
                "DELETE FROM todos WHERE stage = ?1 AND id = ?2",
                params![stage, id],
            )?;
            Ok(n > 0)
        })
        .await
    }

    /// Sets `completed` on every todo of `stage` and returns the resulting list,
    /// in one transaction so the list reflects exactly this change.
    pub async fn set_all_completed(
        &self,
        stage: &Stage,
        completed: bool,
    ) -> Result<Vec<Todo>, StoreError> {
        let stage = stage.as_str().to_owned();
        self.with_conn(move |conn| {
            let tx = conn.transaction()?;
            tx.execute(
                "UPDATE todos SET completed = ?2 WHERE stage = ?1",
                params![stage, completed],
            )?;
            let todos = list_in(&tx, &stage)?;
            tx.commit()?;
            Ok(todos)
        })
        .await
    }

    /// Deletes every completed todo of `stage`; returns how many were deleted.
    pub async fn delete_completed(&self, stage: &Stage) -> Result<usize, StoreError> {
        let stage = stage.as_str().to_owned();
        self.with_conn(move |conn| {
            conn.execute(
                "DELETE FROM todos WHERE stage = ?1 AND completed = 1",
                params![stage],
            )
        })
        .await
    }
}

fn list_in(conn: &Connection, stage: &str) -> Result<Vec<Todo>, rusqlite::Error> {
    let mut stmt = conn.prepare_cached(LIST_SQL)?;
    let rows = stmt.query_map(params![stage], todo_from_row)?;
    rows.collect()
}

fn todo_from_row(row: &Row<'_>) -> Result<Todo, rusqlite::Error> {
    Ok(Todo {
        id: row.get(0)?,
        title: row.get(1)?,
        completed: row.get(2)?,
        created_at: row.get(3)?,
    })
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
}
