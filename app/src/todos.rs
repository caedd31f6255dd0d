//! The TodoMVC UI (markup and class names of the TodoMVC app spec, styled by
//! todomvc-app-css). State lives in [`Store`], shared through context; view
//! state stays in the component that uses it (the filter), or in the row
//! (`Row::editing`) because the list handles the rows' events.
use std::any::Any;

use leptos::ev;
use leptos::html;
use leptos::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::KeyboardEvent;

use crate::api::Api;
use crate::model::{self, Filter};
use crate::store::{Row, Store};

/// The filter from `location.hash`, kept in sync through `hashchange` so links,
/// reloads and the back button all work.
fn use_hash_filter() -> ReadSignal<Filter> {
    fn current() -> Filter {
        let hash = window().location().hash().unwrap_or_default();
        Filter::from_hash(&hash)
    }
    let (filter, set_filter) = signal(current());
    let handle = window_event_listener(ev::hashchange, move |_| set_filter.set(current()));
    on_cleanup(move || handle.remove());
    filter
}

/// The destroy button's accessible name.
const DELETE: &str = "Delete";

/// Enter, but not the Enter that confirms an IME composition (CJK input).
fn is_enter(ev: &KeyboardEvent) -> bool {
    ev.key() == "Enter" && !ev.is_composing()
}

#[component]
pub fn TodoApp(api: Api) -> impl IntoView {
    let store = Store::new(api);
    provide_context(store);
    store.load();

    let filter = use_hash_filter();
    let edit_field: EditField = StoredValue::new_local(None);
    // Re-runs on any toggle: O(n) untracked reads, no allocation, and only the
    // footer and toggle-all depend on it (see `Store::completed_changed`).
    let counts = Memo::new(move |_| {
        store.completed_changed.track();
        store
            .todos
            .with(|l| model::counts(l.iter().map(|r| r.completed.get_untracked())))
    });
    let is_empty = move || store.todos.with(Vec::is_empty);
    let all_done = move || {
        let (active, done) = counts.get();
        active == 0 && done > 0
    };
    // Under "All" nothing but the list itself is read, so a toggle there does
    // not even re-run this; under a filter any toggle re-runs it (O(n)).
    // A plain closure, not a memo: `<For>` runs it in an effect of its own and
    // diffs by key, and a memo's extra equality check bought nothing but bytes.
    let visible = move || {
        let f = filter.get();
        store.todos.with(|l| {
            if f == Filter::All {
                l.clone()
            } else {
                store.completed_changed.track();
                l.iter()
                    .filter(|r| f.accepts(r.completed.get_untracked()))
                    .copied()
                    .collect::<Vec<Row>>()
            }
        })
    };
    // The `index`th row of `visible`, for the list's events: found in place,
    // not by building the whole visible list (1,000 rows copied per click).
    let row_at = move |index: usize| {
        let f = filter.get_untracked();
        store.todos.with_untracked(|l| {
            if f == Filter::All {
                l.get(index).copied()
            } else {
                l.iter()
                    .filter(|r| f.accepts(r.completed.get_untracked()))
                    .nth(index)
                    .copied()
            }
        })
    };

    view! {
        <section class="todoapp">
            // Above the header, not between header and main: todomvc-app-css
            // places the toggle-all chevron 65px above `.main`, i.e. on the
            // new-todo input, so nothing may sit between the two.
            <ErrorBanner />
            <header class="header">
                <h1>"todos"</h1>
                <NewTodo />
            </header>
            <section class="main" class:hidden=is_empty>
                <input
                    id="toggle-all"
                    class="toggle-all"
                    type="checkbox"
                    prop:checked=all_done
                    on:change=move |_| store.set_all_completed(!all_done())
                />
                <label for="toggle-all">"Mark all as complete"</label>
                <ul
                    class="todo-list"
                    on:click=move |ev| on_list_event(store, &ev, false, row_at, edit_field)
                    on:dblclick=move |ev| on_list_event(store, &ev, true, row_at, edit_field)
                >
                    <For each=visible key=|row| row.uid children=move |row| view! { <TodoItem row /> } />
                </ul>
            </section>
            <Show when=move || store.loading.get()>
                <p class="loading">"Loading todos…"</p>
            </Show>
            <Footer filter counts />
        </section>
        <footer class="info">
            <p>"Double-click to edit a todo"</p>
            <p>"Part of " <a href="https://todomvc.com">"TodoMVC"</a></p>
        </footer>
    }
}

/// The rows' events, handled once for the whole list: a row's checkbox toggles
/// it, its destroy button deletes it, a double-click on its title starts an
/// edit. One listener per kind on the list instead of three per row: at 1,000
/// rows, creating those listeners was a tenth of the first render. (`click`,
/// not `change`, for the checkbox: it also fires for the keyboard's Space,
/// after the box has changed.) `dblclick` says which of the two `ev` is, so its
/// type need not be read back from the event.
fn on_list_event(
    store: Store,
    ev: &ev::Event,
    dblclick: bool,
    row_at: impl Fn(usize) -> Option<Row>,
    edit_field: EditField,
) {
    // What the event asks for, from its target alone: most clicks in the list
    // (on a title, on the row, in the edit field, the two before a double-click)
    // ask for nothing, and need not find their row.
    let target = event_target::<web_sys::Element>(ev);
    let wanted = if dblclick {
        if target.tag_name() != "LABEL" {
            return;
        }
        Wanted::Edit
    } else {
        let classes = target.class_list();
        if classes.contains("toggle") {
            Wanted::Complete(
                target
                    .unchecked_ref::<web_sys::HtmlInputElement>()
                    .checked(),
            )
        } else if classes.contains("destroy") {
            Wanted::Remove
        } else {
            return;
        }
    };
    let Some(li) = target.closest("li").ok().flatten() else {
        return;
    };
    // The `<li>`s are the rows in order: `<For>` keeps them so, and an event
    // never runs between a change of the list and the DOM following it.
    // Counted by walking back (a step per row above, ~0.1 ms at the 1,000th),
    // not `Array.from(ul.children)`: that costs ~0.15 ms for every click.
    let mut index = 0;
    let mut above = li.previous_element_sibling();
    while let Some(el) = above {
        index += 1;
        above = el.previous_element_sibling();
    }
    let Some(row) = row_at(index) else {
        return;
    };
    match wanted {
        Wanted::Edit => start_edit(row, li, edit_field),
        Wanted::Complete(completed) => store.set_completed(row, completed),
        Wanted::Remove => store.remove(row),
    }
}

/// What an event in the list asks of its row.
enum Wanted {
    Edit,
    Complete(bool),
    Remove,
}

/// The edit field mounted last, if any: its row and the `UnmountHandle` of the
/// [`EditTitle`] mounted into that row's `<li>`. Dropping the handle removes
/// the field.
type EditField = StoredValue<Option<(Row, Box<dyn Any>)>, LocalStorage>;

/// Puts an edit field into the row's `<li>`. Mounted on demand rather than
/// declared in [`TodoItem`]: a field that is almost never there would still
/// cost every row a reactive branch and a placeholder node.
fn start_edit(row: Row, li: web_sys::Element, edit_field: EditField) {
    // The previous field goes now: hidden since its edit ended, or still open
    // if this double-click came without a blur.
    if let Some((previous, handle)) = edit_field.try_update_value(Option::take).flatten() {
        if previous.editing.try_get_untracked() == Some(true) {
            previous.editing.set(false);
        }
        drop(handle);
    }
    row.editing.set(true);
    let handle = leptos::mount::mount_to(li.unchecked_into(), move || {
        view! { <EditTitle row /> }
    });
    edit_field.set_value(Some((row, Box::new(handle))));
}

/// The new-todo input. Uncontrolled: the value is read from the element on
/// Enter and cleared right there, so a second Enter in the same tick already
/// sees an empty input.
#[component]
fn NewTodo() -> impl IntoView {
    let store = expect_context::<Store>();
    let input = NodeRef::<html::Input>::new();
    // `autofocus` is not reliable for elements inserted after page load, so
    // focus explicitly once mounted.
    Effect::new(move |_| {
        if let Some(el) = input.get() {
            let _ = el.focus();
        }
    });
    let on_keydown = move |ev: KeyboardEvent| {
        if !is_enter(&ev) {
            return;
        }
        if let Some(el) = input.get_untracked()
            && store.add(&el.value())
        {
            el.set_value("");
        }
    };
    view! {
        <input
            class="new-todo"
            placeholder="What needs to be done?"
            autofocus
            node_ref=input
            on:keydown=on_keydown
        />
    }
}

/// One row. It holds its [`Row`], whose fields are signals, so a toggle or a
/// rename updates exactly this row's bindings and no other row runs any code.
/// Its events are handled by the list (`on_list_event`).
#[component]
fn TodoItem(row: Row) -> impl IntoView {
    let Row {
        title,
        completed,
        editing,
        ..
    } = row;
    // All three classes in one binding: one effect and one `class` write per
    // row, where a `class:` each would be three effects and three DOMTokenLists.
    let class = move || {
        const CLASSES: [&str; 8] = [
            "",
            "completed",
            "editing",
            "completed editing",
            "pending",
            "completed pending",
            "editing pending",
            "completed editing pending",
        ];
        let pending = row.id.with(Option::is_none);
        CLASSES[usize::from(completed.get())
            | usize::from(editing.get()) << 1
            | usize::from(pending) << 2]
    };

    view! {
        <li class=class>
            <div class="view">
                <input class="toggle" type="checkbox" prop:checked=completed />
                <label>{title}</label>
                // Not a literal: a button of literals only would be cloned from
                // a `<template>`, which is slower here than creating it.
                <button class="destroy" aria-label=DELETE></button>
            </div>
        </li>
    }
}

/// A row's edit field, mounted by [`start_edit`]: most rows never have one.
/// When the edit ends the field only hides (todomvc-app-css shows `.edit` only
/// in `li.editing`) until the next edit removes it: removing the focused input
/// at once cost ~0.3 ms of the edit, and the TodoMVC markup has it there anyway.
#[component]
fn EditTitle(row: Row) -> impl IntoView {
    let store = expect_context::<Store>();
    let editing = row.editing;
    let input = NodeRef::<html::Input>::new();
    // Runs once the input is in the DOM, after the row's `editing` class has
    // made it visible (a hidden input cannot take focus).
    Effect::new(move |_| {
        if let Some(el) = input.get() {
            let _ = el.focus();
        }
    });
    // Enter and blur both save; Escape ends the edit without saving, and the
    // blur that follows (the field hides) finds `editing == false`.
    let save = move |ev: &ev::Event| {
        if editing.get_untracked() {
            editing.set(false);
            store.rename(row, &event_target_value(ev));
        }
    };
    view! {
        <input
            class="edit"
            node_ref=input
            prop:value=row.title.get_untracked()
            on:keydown=move |ev: KeyboardEvent| {
                if is_enter(&ev) {
                    save(&ev);
                } else if ev.key() == "Escape" {
                    editing.set(false);
                }
            }
            on:blur=move |ev| save(&ev)
        />
    }
}

#[component]
fn Footer(filter: ReadSignal<Filter>, counts: Memo<(usize, usize)>) -> impl IntoView {
    let store = expect_context::<Store>();
    let active = move || counts.get().0;
    let link = move |f: Filter, text: &'static str| {
        view! {
            <li>
                <a href=f.href() class:selected=move || filter.get() == f>
                    {text}
                </a>
            </li>
        }
    };
    view! {
        <footer class="footer" class:hidden=move || store.todos.with(Vec::is_empty)>
            <span class="todo-count">
                <strong>{active}</strong>
                {move || model::items_left_suffix(active())}
            </span>
            <ul class="filters">
                {link(Filter::All, "All")}
                {link(Filter::Active, "Active")}
                {link(Filter::Completed, "Completed")}
            </ul>
            <button
                class="clear-completed"
                class:hidden=move || counts.get().1 == 0
                on:click=move |_| store.clear_completed()
            >
                "Clear completed"
            </button>
        </footer>
    }
}

/// The last failed action's message, until dismissed.
#[component]
fn ErrorBanner() -> impl IntoView {
    let store = expect_context::<Store>();
    view! {
        <Show when=move || store.error.with(Option::is_some)>
            <div class="error-banner" role="alert">
                <span class="message">{move || store.error.get().unwrap_or_default()}</span>
                <button class="dismiss" aria-label="Dismiss" on:click=move |_| store.error.set(None)>
                    "×"
                </button>
            </div>
        </Show>
    }
}
