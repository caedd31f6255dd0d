//! SQLite persistence: the embedded default of `todo-api`.
//!
//! One connection behind a mutex is plenty for a local development server and
//! makes every operation trivially serialisable. SQLite calls block, so every
//! operation runs inside `tokio::task::spawn_blocking` to keep the async
//! runtime's worker threads free for other requests.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, Row, params};

use super::{Backend, BoxFuture, StoreError};
use crate::model::{Stage, Title, Todo, TodoChanges, new_todo};
use crate::page::{Cursor, Limit, Page};

/// Every stage lives in the same table, keyed by `(stage, id)`, so stages are
/// isolated by construction of every query's `WHERE stage = ?`.
///
/// List order is `(created_at, id)`: `created_at` is fixed-width RFC 3339 text,
/// so ordering by it is time order, and the id (a UUID v7, time-ordered, the
/// DynamoDB store's sort key) breaks ties between todos of the same
/// millisecond, so both stores list in the same order. Both columns are part of
/// every row for good, which is what a page cursor needs: `rowid` (the earlier
/// tie-breaker) can be reused after a delete and renumbered by `VACUUM`.
/// `todos_stage_order` serves each page as one index range scan; it replaces
/// `todos_stage_created`, which it contains.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS todos (
    stage      TEXT    NOT NULL,
    id         TEXT    NOT NULL,
    title      TEXT    NOT NULL,
    completed  INTEGER NOT NULL DEFAULT 0 CHECK (completed IN (0, 1)),
    created_at TEXT    NOT NULL,
    PRIMARY KEY (stage, id)
);
CREATE INDEX IF NOT EXISTS todos_stage_order ON todos (stage, created_at, id);
DROP INDEX IF EXISTS todos_stage_created;
";

const COLUMNS: &str = "id, title, completed, created_at";
/// The first page.
const FIRST_PAGE_SQL: &str = "SELECT id, title, completed, created_at FROM todos
     WHERE stage = ?1 ORDER BY created_at, id LIMIT ?2";
/// Every later page: keyset on the order columns, strictly after the cursor's
/// position (which need not be a row that still exists).
const NEXT_PAGE_SQL: &str = "SELECT id, title, completed, created_at FROM todos
     WHERE stage = ?1 AND (created_at, id) > (?3, ?4) ORDER BY created_at, id LIMIT ?2";

/// The SQLite backend; one shared connection.
pub(super) struct Sqlite {
    conn: Arc<Mutex<Connection>>,
}

impl Sqlite {
    /// Opens (creating if needed) the database file at `path` and its schema.
    /// The special path `:memory:` gives a private in-memory database.
    pub(super) fn open(path: &Path) -> Result<Sqlite, StoreError> {
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
    pub(super) fn open_in_memory() -> Result<Sqlite, StoreError> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(conn: Connection) -> Result<Sqlite, StoreError> {
        conn.busy_timeout(Duration::from_secs(5))?;
        conn.execute_batch(SCHEMA)?;
        Ok(Sqlite {
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
}

impl Backend for Sqlite {
    fn list_page<'a>(
        &'a self,
        stage: &'a Stage,
        limit: Limit,
        after: Option<&'a Cursor>,
    ) -> BoxFuture<'a, Result<Page, StoreError>> {
        let stage = stage.as_str().to_owned();
        let after = after.cloned();
        Box::pin(self.with_conn(move |conn| page_in(conn, &stage, limit, after.as_ref())))
    }

    fn create<'a>(
        &'a self,
        stage: &'a Stage,
        title: Title,
        completed: bool,
    ) -> BoxFuture<'a, Result<Todo, StoreError>> {
        let stage = stage.as_str().to_owned();
        let todo = new_todo(title, completed);
        Box::pin(self.with_conn(move |conn| {
            conn.execute(
                "INSERT INTO todos (stage, id, title, completed, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![stage, todo.id, todo.title, todo.completed, todo.created_at],
            )?;
            Ok(todo)
        }))
    }

    fn get<'a>(
        &'a self,
        stage: &'a Stage,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Option<Todo>, StoreError>> {
        let (stage, id) = (stage.as_str().to_owned(), id.to_owned());
        Box::pin(self.with_conn(move |conn| {
            conn.query_row(
                &format!("SELECT {COLUMNS} FROM todos WHERE stage = ?1 AND id = ?2"),
                params![stage, id],
                todo_from_row,
            )
            .optional()
        }))
    }

    fn update<'a>(
        &'a self,
        stage: &'a Stage,
        id: &'a str,
        changes: TodoChanges,
    ) -> BoxFuture<'a, Result<Option<Todo>, StoreError>> {
        let (stage, id) = (stage.as_str().to_owned(), id.to_owned());
        let title = changes.title.map(Title::into_string);
        let completed = changes.completed;
        Box::pin(self.with_conn(move |conn| {
            conn.query_row(
                &format!(
                    "UPDATE todos SET title = COALESCE(?3, title), completed = COALESCE(?4, completed)
                     WHERE stage = ?1 AND id = ?2 RETURNING {COLUMNS}"
                ),
                params![stage, id, title, completed],
                todo_from_row,
            )
            .optional()
        }))
    }

    fn delete<'a>(
        &'a self,
        stage: &'a Stage,
        id: &'a str,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        let (stage, id) = (stage.as_str().to_owned(), id.to_owned());
        Box::pin(self.with_conn(move |conn| {
            let n = conn.execute(
                "DELETE FROM todos WHERE stage = ?1 AND id = ?2",
                params![stage, id],
            )?;
            Ok(n > 0)
        }))
    }

    fn set_all_completed<'a>(
        &'a self,
        stage: &'a Stage,
        completed: bool,
    ) -> BoxFuture<'a, Result<usize, StoreError>> {
        let stage = stage.as_str().to_owned();
        Box::pin(self.with_conn(move |conn| {
            conn.execute(
                "UPDATE todos SET completed = ?2 WHERE stage = ?1 AND completed <> ?2",
                params![stage, completed],
            )
        }))
    }

    fn delete_completed<'a>(
        &'a self,
        stage: &'a Stage,
    ) -> BoxFuture<'a, Result<usize, StoreError>> {
        let stage = stage.as_str().to_owned();
        Box::pin(self.with_conn(move |conn| {
            conn.execute(
                "DELETE FROM todos WHERE stage = ?1 AND completed = 1",
                params![stage],
            )
        }))
    }
}

/// One page: `limit + 1` rows are read so that whether another page follows is
/// known without a second query (and the last page never links to an empty one).
fn page_in(
    conn: &Connection,
    stage: &str,
    limit: Limit,
    after: Option<&Cursor>,
) -> Result<Page, rusqlite::Error> {
    let wanted = i64::try_from(limit.get() + 1).unwrap_or(i64::MAX);
    let mut todos = match after {
        None => {
            let mut stmt = conn.prepare_cached(FIRST_PAGE_SQL)?;
            stmt.query_map(params![stage, wanted], todo_from_row)?
                .collect::<Result<Vec<_>, _>>()?
        }
        Some(c) => {
            let mut stmt = conn.prepare_cached(NEXT_PAGE_SQL)?;
            stmt.query_map(
                params![stage, wanted, c.created_at(), c.id()],
                todo_from_row,
            )?
            .collect::<Result<Vec<_>, _>>()?
        }
    };
    let more = todos.len() > limit.get();
    todos.truncate(limit.get());
    let next = if more {
        todos.last().map(Cursor::after)
    } else {
        None
    };
    Ok(Page { todos, next })
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

    /// Each page is a range scan of `todos_stage_order` that stops after
    /// `limit + 1` rows: no sort of the whole stage in a temporary B-tree.
    #[test]
    fn pages_are_index_range_scans() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(SCHEMA).unwrap();
        for sql in [FIRST_PAGE_SQL, NEXT_PAGE_SQL] {
            let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
            let values: [&dyn rusqlite::ToSql; 4] = [&"dev", &2, &"2025-01-01T00:00:00.000Z", &"x"];
            let bound = rusqlite::params_from_iter(values.into_iter().take(stmt.parameter_count()));
            let plan: Vec<String> = stmt
                .query_map(bound, |r| r.get::<_, String>(3))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            let plan = plan.join("\n");
            assert!(plan.contains("todos_stage_order"), "{sql}: {plan}");
            assert!(!plan.contains("TEMP B-TREE"), "{sql}: {plan}");
        }
    }
}
