//! Pure state logic of the todo list: no web-sys, no Leptos, so it runs (and is
//! tested) natively as well as in the browser. The UI and the network layer only
//! call into these functions, which keeps the optimistic-update bookkeeping
//! (apply now, undo exactly this change on failure) in one testable place.

/// One todo as plain data: what a list row is made from and read back as
/// (the app's `store::Row` keeps each field in a signal of its own), and what
/// the native tests use.
///
/// `uid` is a client-side key that never changes for the life of the row: a todo
/// created offline-first starts with no server `id` and receives one when the
/// POST answers, and keying rows by `uid` means that swap does not re-create the
/// row (which would drop focus or an edit in progress).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Todo {
    pub uid: u64,
    /// The server's id, or `None` while the create request is still in flight.
    pub id: Option<String>,
    pub title: String,
    pub completed: bool,
}

/// A todo as the API returns it (`createdAt` is not needed by the UI, so it is
/// not kept; the server already returns todos in creation order).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerTodo {
    pub id: String,
    pub title: String,
    pub completed: bool,
}

/// Which todos the list shows, driven by `location.hash`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Filter {
    #[default]
    All,
    Active,
    Completed,
}

impl Filter {
    /// Parses `location.hash` (`#/`, `#/active`, `#/completed`). Anything unknown
    /// falls back to `All` rather than showing an empty list for a typo'd link.
    /// The leading `#` and `/` are optional so `#active` works too.
    pub fn from_hash(hash: &str) -> Self {
        let route = hash.trim_start_matches('#').trim_start_matches('/');
        let route = route.trim_end_matches('/');
        match route {
            "active" => Filter::Active,
            "completed" => Filter::Completed,
            _ => Filter::All,
        }
    }

    /// The link target of the filter (the TodoMVC spec's hrefs).
    pub fn href(self) -> &'static str {
        match self {
            Filter::All => "#/",
            Filter::Active => "#/active",
            Filter::Completed => "#/completed",
        }
    }

    /// Whether a todo with this `completed` is listed. Callers check
    /// `self == Filter::All` first when reading `completed` has a cost (a
    /// tracked signal read subscribes the list to every row).
    pub fn accepts(self, completed: bool) -> bool {
        match self {
            Filter::All => true,
            Filter::Active => !completed,
            Filter::Completed => completed,
        }
    }
}

/// The words after the count in the footer: "0 items left", "1 item left",
/// "2 items left" (the number itself is rendered separately in `<strong>`).
pub fn items_left_suffix(count: usize) -> &'static str {
    if count == 1 {
        " item left"
    } else {
        " items left"
    }
}

/// Trims a title typed by the user; `None` means "nothing to save" (empty or
/// only whitespace), which the UI treats as "ignore" for a new todo and as
/// "delete" for an edited one.
pub fn clean_title(raw: &str) -> Option<String> {
    let t = raw.trim();
    (!t.is_empty()).then(|| t.to_owned())
}

/// Number of active and completed todos, from each todo's `completed` (the
/// caller reads them, tracked or not, as its context needs).
pub fn counts(completed: impl IntoIterator<Item = bool>) -> (usize, usize) {
    completed.into_iter().fold((0, 0), |(active, done), c| {
        if c {
            (active, done + 1)
        } else {
            (active + 1, done)
        }
    })
}

/// What the list operations below need to know about a row. The app's rows keep
/// each field in its own signal (so a toggle touches one row), while the tests
/// use plain [`Todo`]s: one implementation of the bookkeeping serves both.
/// Implementations read without tracking: these run inside actions, not views.
pub trait Entry {
    fn uid(&self) -> u64;
    /// The server's id, `None` while the create is in flight.
    fn server_id(&self) -> Option<String>;
    fn is_completed(&self) -> bool;
    fn has_title(&self, title: &str) -> bool;
    fn is_pending(&self) -> bool {
        self.server_id().is_none()
    }
}

impl Entry for Todo {
    fn uid(&self) -> u64 {
        self.uid
    }
    fn server_id(&self) -> Option<String> {
        self.id.clone()
    }
    fn is_completed(&self) -> bool {
        self.completed
    }
    fn has_title(&self, title: &str) -> bool {
        self.title == title
    }
    fn is_pending(&self) -> bool {
        self.id.is_none()
    }
}

pub fn find<T: Entry>(list: &[T], uid: u64) -> Option<&T> {
    list.iter().find(|t| t.uid() == uid)
}

/// True when a create with this (already trimmed) title is still in flight:
/// used to swallow a repeated Enter so it cannot create a duplicate.
pub fn has_pending_title<T: Entry>(list: &[T], title: &str) -> bool {
    list.iter().any(|t| t.is_pending() && t.has_title(title))
}

/// Removes a todo and returns where it was, so a failed DELETE can put it back
/// in the same place.
pub fn remove<T: Entry>(list: &mut Vec<T>, uid: u64) -> Option<(usize, T)> {
    let idx = list.iter().position(|t| t.uid() == uid)?;
    Some((idx, list.remove(idx)))
}

/// Puts a removed todo back (rollback of a failed delete). The index is clamped
/// because other todos may have been removed meanwhile; a todo that is already
/// back (same uid) is not duplicated.
pub fn reinsert<T: Entry>(list: &mut Vec<T>, index: usize, todo: T) {
    if find(list, todo.uid()).is_some() {
        return;
    }
    let index = index.min(list.len());
    list.insert(index, todo);
}

/// Removes all completed todos, returning them with their former positions in
/// ascending order (reinserting them in that order restores the list).
pub fn take_completed<T: Entry>(list: &mut Vec<T>) -> Vec<(usize, T)> {
    let mut removed = Vec::new();
    let mut kept = Vec::with_capacity(list.len());
    for (i, t) in std::mem::take(list).into_iter().enumerate() {
        if t.is_completed() {
            removed.push((i, t));
        } else {
            kept.push(t);
        }
    }
    *list = kept;
    removed
}

/// Applies the first GET: the server's list (each made into a row by `make`),
/// followed by anything the user created while it was loading that the server
/// did not already return (a create that answered before the GET is in both;
/// match by server id).
pub fn merge_loaded<T: Entry>(
    local: &mut Vec<T>,
    server: Vec<ServerTodo>,
    make: impl FnMut(ServerTodo) -> T,
) {
    let mut merged: Vec<T> = server.into_iter().map(make).collect();
    for t in std::mem::take(local) {
        let known = t.server_id().is_some_and(|id| {
            merged
                .iter()
                .any(|m| m.server_id().as_deref() == Some(id.as_str()))
        });
        if !known {
            merged.push(t);
        }
    }
    *local = merged;
}

/// The fields a PATCH must send to bring the server's copy of a todo in line
/// with the local one. Used when a create answers: the user may already have
/// toggled or renamed the todo while it was pending.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Patch {
    pub title: Option<String>,
    pub completed: Option<bool>,
}

impl Patch {
    pub fn is_empty(&self) -> bool {
        self.title.is_none() && self.completed.is_none()
    }

    pub fn between(server: &ServerTodo, local: &Todo) -> Self {
        Patch {
            title: (server.title != local.title).then(|| local.title.clone()),
            completed: (server.completed != local.completed).then_some(local.completed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn todo(uid: u64, title: &str, completed: bool) -> Todo {
        Todo {
            uid,
            id: Some(format!("s{uid}")),
            title: title.into(),
            completed,
        }
    }

    #[test]
    fn filter_from_hash() {
        assert_eq!(Filter::from_hash(""), Filter::All);
        assert_eq!(Filter::from_hash("#/"), Filter::All);
        assert_eq!(Filter::from_hash("#/active"), Filter::Active);
        assert_eq!(Filter::from_hash("#/completed"), Filter::Completed);
        assert_eq!(Filter::from_hash("#completed"), Filter::Completed);
        assert_eq!(Filter::from_hash("#/active/"), Filter::Active);
        assert_eq!(Filter::from_hash("#/nonsense"), Filter::All);
        for f in [Filter::All, Filter::Active, Filter::Completed] {
            assert_eq!(Filter::from_hash(f.href()), f);
        }
    }

    #[test]
    fn filter_matches() {
        assert!(Filter::All.accepts(true) && Filter::All.accepts(false));
        assert!(Filter::Completed.accepts(true) && !Filter::Completed.accepts(false));
        assert!(Filter::Active.accepts(false) && !Filter::Active.accepts(true));
    }

    #[test]
    fn pluralisation() {
        assert_eq!(format!("{}{}", 0, items_left_suffix(0)), "0 items left");
        assert_eq!(format!("{}{}", 1, items_left_suffix(1)), "1 item left");
        assert_eq!(format!("{}{}", 2, items_left_suffix(2)), "2 items left");
    }

    #[test]
    fn titles_are_trimmed_and_empty_is_none() {
        assert_eq!(clean_title("  buy milk \n"), Some("buy milk".into()));
        assert_eq!(clean_title("   "), None);
        assert_eq!(clean_title(""), None);
        assert_eq!(clean_title(" <b>ünï</b> 🦀 "), Some("<b>ünï</b> 🦀".into()));
    }

    #[test]
    fn remove_and_reinsert_restore_position() {
        let mut l = vec![
            todo(1, "a", false),
            todo(2, "b", false),
            todo(3, "c", false),
        ];
        let (i, t) = remove(&mut l, 2).unwrap();
        assert_eq!(i, 1);
        assert!(remove(&mut l, 2).is_none());
        reinsert(&mut l, i, t.clone());
        assert_eq!(l.iter().map(|t| t.uid).collect::<Vec<_>>(), [1, 2, 3]);
        reinsert(&mut l, i, t);
        assert_eq!(l.len(), 3, "no duplicate on double rollback");
        let (_, t) = remove(&mut l, 3).unwrap();
        l.clear();
        reinsert(&mut l, 2, t);
        assert_eq!(l.len(), 1, "index is clamped");
    }

    #[test]
    fn clear_completed_and_rollback() {
        let mut l = vec![todo(1, "a", true), todo(2, "b", false), todo(3, "c", true)];
        let removed = take_completed(&mut l);
        assert_eq!(l.iter().map(|t| t.uid).collect::<Vec<_>>(), [2]);
        for (i, t) in removed {
            reinsert(&mut l, i, t);
        }
        assert_eq!(l.iter().map(|t| t.uid).collect::<Vec<_>>(), [1, 2, 3]);
    }

    #[test]
    fn counting() {
        let l = [todo(1, "a", true), todo(2, "b", false), todo(3, "c", false)];
        assert_eq!(counts(l.iter().map(|t| t.completed)), (2, 1));
        assert_eq!(counts([]), (0, 0));
    }

    #[test]
    fn pending_titles() {
        let mut l = vec![todo(1, "a", false)];
        l.push(Todo {
            uid: 2,
            id: None,
            title: "b".into(),
            completed: false,
        });
        assert!(has_pending_title(&l, "b"));
        assert!(
            !has_pending_title(&l, "a"),
            "a saved todo may be added again on purpose"
        );
    }

    #[test]
    fn merge_keeps_local_creates_without_duplicates() {
        let mut local = vec![
            Todo {
                uid: 1,
                id: None,
                title: "pending".into(),
                completed: false,
            },
            Todo {
                uid: 2,
                id: Some("x".into()),
                title: "answered".into(),
                completed: false,
            },
        ];
        let server = vec![
            ServerTodo {
                id: "old".into(),
                title: "old".into(),
                completed: true,
            },
            ServerTodo {
                id: "x".into(),
                title: "answered".into(),
                completed: false,
            },
        ];
        let mut n = 10;
        merge_loaded(&mut local, server, |s| {
            n += 1;
            Todo {
                uid: n,
                id: Some(s.id),
                title: s.title,
                completed: s.completed,
            }
        });
        let titles: Vec<_> = local.iter().map(|t| t.title.as_str()).collect();
        assert_eq!(titles, ["old", "answered", "pending"]);
        assert_eq!(local[2].uid, 1, "local rows keep their key");
    }

    #[test]
    fn patch_between() {
        let s = ServerTodo {
            id: "1".into(),
            title: "a".into(),
            completed: false,
        };
        let same = Todo {
            uid: 1,
            id: None,
            title: "a".into(),
            completed: false,
        };
        assert!(Patch::between(&s, &same).is_empty());
        let changed = Todo {
            completed: true,
            title: "b".into(),
            ..same
        };
        assert_eq!(
            Patch::between(&s, &changed),
            Patch {
                title: Some("b".into()),
                completed: Some(true)
            }
        );
    }
}
