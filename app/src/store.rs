//! The todo list state and its optimistic actions.
//!
//! Every action changes the list at once and then calls the API. When the call
//! fails, exactly that action's change is undone (not a snapshot of the whole
//! list, which would also undo other actions that succeeded meanwhile) and the
//! error is shown in the banner.
//!
//! Todos whose POST has not answered yet ("pending", no server id) can be
//! toggled, renamed or deleted like any other: those changes stay local and
//! are sent once the POST answers (see [`Store::created`]).
//!
//! Each todo is a [`Row`] whose fields are signals of their own, so toggling or
//! renaming one todo notifies that row's bindings and the counts, never the
//! other rows; the list signal itself changes only when rows come or go.
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::api::Api;
use crate::model::{self, Entry, Patch, ServerTodo, Todo};

/// Source of [`Todo::uid`]s, unique for the life of the page.
fn next_uid() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// One todo of the list: `Copy`, so the row component and the tasks of an
/// action simply hold it, and an action on one row never searches the list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Row {
    /// Client-side key, stable for the row's life (see [`Todo::uid`]).
    pub uid: u64,
    /// The server's id; `None` while the create is in flight.
    pub id: RwSignal<Option<String>>,
    pub title: RwSignal<String>,
    /// Written only through `Store::mark`, which also notifies the counts.
    pub completed: RwSignal<bool>,
    /// View state: true while the row's title is being edited. Kept here, not
    /// in the row's view, because the list handles the rows' events (see
    /// `todos::on_list_event`).
    pub editing: RwSignal<bool>,
}

impl Row {
    /// Rows are made by the first load (in the app's scope) and by the new-todo
    /// input, both as long-lived as the page; their signals are disposed of
    /// explicitly once a removal is final (see `Store::forget`), never with
    /// whichever row view happens to be showing them.
    fn new(todo: Todo) -> Self {
        Row {
            uid: todo.uid,
            id: RwSignal::new(todo.id),
            title: RwSignal::new(todo.title),
            completed: RwSignal::new(todo.completed),
            editing: RwSignal::new(false),
        }
    }

    /// Frees the row's signals (see [`Row::new`]).
    fn dispose(self) {
        self.id.dispose();
        self.title.dispose();
        self.completed.dispose();
        self.editing.dispose();
    }

    fn snapshot(self) -> Todo {
        Todo {
            uid: self.uid,
            id: self.id.get_untracked(),
            title: self.title.get_untracked(),
            completed: self.completed.get_untracked(),
        }
    }
}

impl Entry for Row {
    fn uid(&self) -> u64 {
        self.uid
    }
    fn server_id(&self) -> Option<String> {
        self.id.get_untracked()
    }
    fn is_completed(&self) -> bool {
        self.completed.get_untracked()
    }
    fn has_title(&self, title: &str) -> bool {
        self.title.with_untracked(|t| t == title)
    }
    fn is_pending(&self) -> bool {
        self.id.with_untracked(Option::is_none)
    }
}

/// Shared through context; `Copy`, so handlers and tasks simply capture it.
#[derive(Clone, Copy)]
pub struct Store {
    /// The rows in order. Changes only when rows are added or removed.
    pub todos: RwSignal<Vec<Row>>,
    /// The message in the error banner, if any.
    pub error: RwSignal<Option<String>>,
    /// True until the first GET has answered (either way).
    pub loading: RwSignal<bool>,
    /// Notified after any row's `completed` changes. The counts and a filtered
    /// list track this one trigger and read the rows untracked: subscribing a
    /// memo to each of 1,000 rows costs more on every toggle (re-subscribing
    /// all of them) than reading 1,000 booleans does.
    /// (A plain `bool` signal that flips, rather than a `Trigger`: the same
    /// notifications, and `RwSignal<bool>`'s code is in the bundle already.)
    pub completed_changed: RwSignal<bool>,
    api: StoredValue<Api>,
}

impl Store {
    pub fn new(api: Api) -> Self {
        Store {
            todos: RwSignal::new(Vec::new()),
            error: RwSignal::new(None),
            loading: RwSignal::new(true),
            completed_changed: RwSignal::new(false),
            api: StoredValue::new(api),
        }
    }

    fn api(self) -> Api {
        self.api.get_value()
    }

    fn report(self, err: impl ToString) {
        let message = err.to_string();
        leptos::logging::warn!("{message}");
        self.error.try_set(Some(message));
    }

    /// Every write of a row's `completed` goes through here (see
    /// [`Store::completed_changed`]).
    fn mark(self, rows: &[Row], completed: bool) {
        for row in rows {
            row.completed.try_set(completed);
        }
        self.completed_changed.update(|flip| *flip = !*flip);
    }

    /// Frees the signals of rows that are gone for good (their removal is
    /// confirmed). Deferred to a later task: the list's views let go of the
    /// rows in this task's microtasks, and must not find them disposed first.
    fn forget(rows: Vec<Row>) {
        if rows.is_empty() {
            return;
        }
        set_timeout(
            move || {
                for row in rows {
                    row.dispose();
                }
            },
            Duration::ZERO,
        );
    }

    fn contains(self, uid: u64) -> bool {
        self.todos
            .try_with_untracked(|l| model::find(l, uid).is_some())
            .unwrap_or(false)
    }

    /// First load. Todos created while it runs are kept (see
    /// [`model::merge_loaded`]).
    pub fn load(self) {
        spawn_local(async move {
            match self.api().list().await {
                Ok(list) => {
                    let make = |s: ServerTodo| {
                        Row::new(Todo {
                            uid: next_uid(),
                            id: Some(s.id),
                            title: s.title,
                            completed: s.completed,
                        })
                    };
                    self.todos
                        .try_update(|l| model::merge_loaded(l, list, make));
                }
                Err(e) => self.report(format!("Could not load the todos. {e}")),
            }
            self.loading.try_set(false);
        });
    }

    /// Adds a todo; returns whether it was accepted, so the caller clears the
    /// input only then.
    ///
    /// Double-submit guard: an Enter with the same trimmed title as a todo whose
    /// create is still in flight is ignored (and the text stays in the input, so
    /// the user can press Enter again once the first one is saved if they really
    /// want two). The input itself is not locked, so typing the next todo right
    /// away works as usual.
    pub fn add(self, raw: &str) -> bool {
        let Some(title) = model::clean_title(raw) else {
            return false;
        };
        let duplicate = self
            .todos
            .try_with_untracked(|l| model::has_pending_title(l, &title))
            .unwrap_or(true);
        if duplicate {
            return false;
        }
        let row = Row::new(Todo {
            uid: next_uid(),
            id: None,
            title: title.clone(),
            completed: false,
        });
        if self.todos.try_update(|l| l.push(row)).is_none() {
            return false;
        }
        spawn_local(async move {
            match self.api().create(&title).await {
                Ok(server) => self.created(row, server).await,
                Err(e) => {
                    self.todos.try_update(|l| model::remove(l, row.uid));
                    Self::forget(vec![row]);
                    self.report(e);
                }
            }
        });
        true
    }

    /// A create answered: give the row its server id, then send whatever the
    /// user did to it while it was pending (toggle, rename, delete).
    async fn created(self, row: Row, server: ServerTodo) {
        let api = self.api();
        // Set the id before anything awaits, so any later change takes the
        // normal (server id) path and nothing is sent twice.
        row.id.try_set(Some(server.id.clone()));
        if !self.contains(row.uid) {
            // Deleted while pending (destroy, clear completed, emptied by edit).
            match api.delete(&server.id).await {
                Ok(()) => Self::forget(vec![row]),
                Err(e) => {
                    row.title.try_set(server.title);
                    self.mark(&[row], server.completed);
                    self.todos.try_update(|l| {
                        let end = l.len();
                        model::reinsert(l, end, row)
                    });
                    self.report(e);
                }
            }
            return;
        }
        let patch = Patch::between(&server, &row.snapshot());
        if patch.is_empty() {
            return;
        }
        if let Err(e) = api.update(&server.id, &patch).await {
            // The server keeps its version; show that one.
            row.title.try_set(server.title);
            self.mark(&[row], server.completed);
            self.report(e);
        }
    }

    pub fn set_completed(self, row: Row, completed: bool) {
        if row.completed.try_get_untracked() != Some(!completed) {
            return;
        }
        self.mark(&[row], completed);
        // Pending: synced by `created`.
        let Some(id) = row.id.get_untracked() else {
            return;
        };
        spawn_local(async move {
            let patch = Patch {
                title: None,
                completed: Some(completed),
            };
            if let Err(e) = self.api().update(&id, &patch).await {
                self.mark(&[row], !completed);
                self.report(e);
            }
        });
    }

    /// Saves an edited title: trimmed; empty deletes the todo (TodoMVC spec).
    pub fn rename(self, row: Row, raw: &str) {
        let Some(title) = model::clean_title(raw) else {
            self.remove(row);
            return;
        };
        let Some(previous) = row.title.try_get_untracked().filter(|t| *t != title) else {
            return;
        };
        row.title.set(title.clone());
        let Some(id) = row.id.get_untracked() else {
            return;
        };
        spawn_local(async move {
            let patch = Patch {
                title: Some(title),
                completed: None,
            };
            if let Err(e) = self.api().update(&id, &patch).await {
                row.title.try_set(previous);
                self.report(e);
            }
        });
    }

    pub fn remove(self, row: Row) {
        let Some(Some((index, _))) = self.todos.try_update(|l| model::remove(l, row.uid)) else {
            return;
        };
        // Pending: `created` deletes it on the server when the POST answers.
        let Some(id) = row.id.get_untracked() else {
            return;
        };
        spawn_local(async move {
            match self.api().delete(&id).await {
                // 404: someone else already deleted it, which is what we wanted.
                Err(e) if e.status() != Some(404) => {
                    self.todos.try_update(|l| model::reinsert(l, index, row));
                    self.report(e);
                }
                _ => Self::forget(vec![row]),
            }
        });
    }

    /// Toggle-all: everything complete, or everything active when all already
    /// were (the caller decides which). Only rows that change are touched, and
    /// a failure undoes exactly those.
    pub fn set_all_completed(self, completed: bool) {
        let changed: Vec<Row> = self
            .todos
            .get_untracked()
            .into_iter()
            .filter(|r| r.completed.get_untracked() != completed)
            .collect();
        if changed.is_empty() {
            return;
        }
        self.mark(&changed, completed);
        spawn_local(async move {
            if let Err(e) = self.api().set_all_completed(completed).await {
                self.mark(&changed, !completed);
                self.report(e);
            }
        });
    }

    pub fn clear_completed(self) {
        let Some(removed) = self.todos.try_update(model::take_completed) else {
            return;
        };
        // Pending ones are left to their create's answer, which deletes them
        // on the server as they are gone locally.
        let saved: Vec<(usize, Row)> = removed
            .into_iter()
            .filter(|(_, r)| !r.is_pending())
            .collect();
        if saved.is_empty() {
            return;
        }
        spawn_local(async move {
            if let Err(e) = self.api().clear_completed().await {
                self.todos.try_update(|l| {
                    for (index, row) in saved {
                        model::reinsert(l, index, row);
                    }
                });
                self.report(e);
            } else {
                Self::forget(saved.into_iter().map(|(_, r)| r).collect());
            }
        });
    }
}
