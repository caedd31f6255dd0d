//! The todo app: Leptos CSR, built to wasm by trunk. One bundle serves every
//! stage; the stage and API base come from `config.json` at runtime.
mod api;
mod app;
mod config;
mod model;
mod store;
mod todos;

fn main() {
    // Readable panics in the browser console instead of "unreachable".
    console_error_panic_hook::set_once();
    leptos::mount::mount_to_body(app::App);
}
