//! The root: load the runtime config, then show the todo app (with a stage
//! badge outside prod) or a message explaining why the config is unusable.
use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::api::{self, Api};
use crate::config::{Config, ConfigError};
use crate::todos::TodoApp;

#[component]
pub fn App() -> impl IntoView {
    // `None` while config.json is being fetched.
    let config = RwSignal::new(None::<Result<Config, ConfigError>>);
    spawn_local(async move {
        config.try_set(Some(api::load_config().await));
    });

    move || match config.get() {
        None => view! { <p class="loading boot">"Loading…"</p> }.into_any(),
        Some(Err(err)) => view! { <ConfigProblem message=err.to_string() /> }.into_any(),
        Some(Ok(cfg)) => view! {
            {cfg.shows_badge().then(|| view! { <StageBadge stage=cfg.stage.clone() /> })}
            <TodoApp api=Api::new(&cfg.api_base) />
        }
        .into_any(),
    }
}

/// Fixed corner badge naming a non-production stage.
#[component]
fn StageBadge(stage: String) -> impl IntoView {
    view! {
        <div id="stage-badge" class="stage-badge" title="Not production: this is a preview stage">
            {stage}
        </div>
    }
}

/// Shown instead of the app when config.json is missing or invalid: a blank
/// page would leave whoever deployed it guessing.
#[component]
fn ConfigProblem(message: String) -> impl IntoView {
    view! {
        <section class="config-problem">
            <h1>"todos"</h1>
            <h2>"This site is not configured"</h2>
            <p id="config-error" class="config-error" role="alert">{message}</p>
        </section>
    }
}
