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
use std::sync::atomic::{AtomicU64, Ordering};

use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::api::Api;
use crate::model::{self, Patch, ServerTodo, Todo};

/// Source of [`Todo::uid`]s, unique for the life of the page.
fn next_uid() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Shared through context; `Copy`, so handlers and tasks simply capture it.
#[derive(Clone, Copy)]
pub struct Store {
    pub todos: RwSignal<Vec<Todo>>,
    /// The message in the error banner, if any.
    pub error: RwSignal<Option<String>>,
    /// True until the first GET has answered (either way).
    pub loading: RwSignal<bool>,
    api: StoredValue<Api>,
}

impl Store {
    pub fn new(api: Api) -> Self {
        Store {
            todos: RwSignal::new(Vec::new()),
            error: RwSignal::new(None),
            loading: RwSignal::new(true),
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

    /// First load. Todos created while it runs are kept (see
    /// [`model::merge_loaded`]).
    pub fn load(self) {
        spawn_local(async move {
            match self.api().list().await {
                Ok(list) => {
                    self.todos
                        .try_update(|l| model::merge_loaded(l, list, next_uid));
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
        let uid = next_uid();
        let accepted = self
            .todos
            .try_update(|l| {
                if model::has_pending_title(l, &title) {
                    return false;
                }
                l.push(Todo {
                    uid,
                    id: None,
                    title: title.clone(),
                    completed: false,
                });
                true
            })
            .unwrap_or(false);
        if accepted {
            spawn_local(async move {
                match self.api().create(&title).await {
                    Ok(server) => self.created(uid, server).await,
                    Err(e) => {
                        self.todos.try_update(|l| model::remove(l, uid));
                        self.report(e);
                    }
                }
            });
        }
        accepted
    }

    /// A create answered: give the row its server id, then send whatever the
    /// user did to it while it was pending (toggle, rename, delete).
    async fn created(self, uid: u64, server: ServerTodo) {
        let api = self.api();
        // Read the local state and set the id in one step, so any later change
        // takes the normal (server id) path and nothing is sent twice.
        let local = self
            .todos
            .try_update(|l| {
                let t = model::find_mut(l, uid)?;
                t.id = Some(server.id.clone());
                Some(t.clone())
            })
            .flatten();
        match local {
            // Deleted while pending (destroy, clear completed, emptied by edit).
            None => {
                if let Err(e) = api.delete(&server.id).await {
                    let todo = Todo {
                        uid,
                        id: Some(server.id),
                        title: server.title,
                        completed: server.completed,
                    };
                    self.todos.try_update(|l| {
                        let end = l.len();
                        model::reinsert(l, end, todo)
                    });
                    self.report(e);
                }
            }
            Some(local) => {
                let patch = Patch::between(&server, &local);
                if patch.is_empty() {
                    return;
                }
                if let Err(e) = api.update(&server.id, &patch).await {
                    // The server keeps its version; show that one.
                    self.todos.try_update(|l| {
                        if let Some(t) = model::find_mut(l, uid) {
                            t.title = server.title;
                            t.completed = server.completed;
                        }
                    });
                    self.report(e);
                }
            }
        }
    }

    pub fn set_completed(self, uid: u64, completed: bool) {
        let id = self.todos.try_update(|l| {
            let t = model::find_mut(l, uid).filter(|t| t.completed != completed)?;
            t.completed = completed;
            Some(t.id.clone())
        });
        // `None`: unknown or unchanged; `Some(None)`: pending, synced by `created`.
        let Some(Some(Some(id))) = id else { return };
        spawn_local(async move {
            let patch = Patch {
                title: None,
                completed: Some(completed),
            };
            if let Err(e) = self.api().update(&id, &patch).await {
                self.todos.try_update(|l| {
                    if let Some(t) = model::find_mut(l, uid) {
                        t.completed = !completed;
                    }
                });
                self.report(e);
            }
        });
    }

    /// Saves an edited title: trimmed; empty deletes the todo (TodoMVC spec).
    pub fn rename(self, uid: u64, raw: &str) {
        let Some(title) = model::clean_title(raw) else {
            self.remove(uid);
            return;
        };
        let change = self.todos.try_update(|l| {
            let t = model::find_mut(l, uid).filter(|t| t.title != title)?;
            let previous = std::mem::replace(&mut t.title, title.clone());
            Some((t.id.clone(), previous))
        });
        let Some(Some((Some(id), previous))) = change else {
            return;
        };
        spawn_local(async move {
            let patch = Patch {
                title: Some(title),
                completed: None,
            };
            if let Err(e) = self.api().update(&id, &patch).await {
                self.todos.try_update(|l| {
                    if let Some(t) = model::find_mut(l, uid) {
                        t.title = previous;
                    }
                });
                self.report(e);
            }
        });
    }

    pub fn remove(self, uid: u64) {
        let Some(Some((index, todo))) = self.todos.try_update(|l| model::remove(l, uid)) else {
            return;
        };
        let Some(id) = todo.id.clone() else { return };
        spawn_local(async move {
            match self.api().delete(&id).await {
                // 404: someone else already deleted it, which is what we wanted.
                Err(e) if e.status() != Some(404) => {
                    self.todos.try_update(|l| model::reinsert(l, index, todo));
                    self.report(e);
                }
                _ => {}
            }
        });
    }

    /// Toggle-all: everything complete, or everything active when all already
    /// were (the caller decides which).
    pub fn set_all_completed(self, completed: bool) {
        let Some(previous) = self
            .todos
            .try_update(|l| model::set_all_completed(l, completed))
        else {
            return;
        };
        if previous.is_empty() {
            return;
        }
        spawn_local(async move {
            if let Err(e) = self.api().set_all_completed(completed).await {
                self.todos
                    .try_update(|l| model::restore_completed(l, &previous));
                self.report(e);
            }
        });
    }

    pub fn clear_completed(self) {
        let Some(removed) = self.todos.try_update(model::take_completed) else {
            return;
        };
        if !removed.iter().any(|(_, t)| !t.is_pending()) {
            // Only pending todos (or none): `created` deletes those on answer.
            return;
        }
        spawn_local(async move {
            if let Err(e) = self.api().clear_completed().await {
                // Pending ones are not put back: their create's answer already
                // deletes them on the server as they are gone locally.
                self.todos.try_update(|l| {
                    for (index, todo) in removed.into_iter().filter(|(_, t)| !t.is_pending()) {
                        model::reinsert(l, index, todo);
                    }
                });
                self.report(e);
            }
        });
    }
}
