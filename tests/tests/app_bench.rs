//! `bench/app.sh`'s driver (an ignored test, run on its own): the app with 1,000
//! todos in headless chromium, next to two other TodoMVCs holding the same 1,000,
//! measured the same way.
//!
//! - `ours`: `dist/` (the release build) + a `config.json` naming a local
//!   `todo-api`, which holds the todos (created over HTTP before each load).
//! - `vanilla`: tastejs's vanilla-JS TodoMVC (`bench/peers/vanillajs`), todos in
//!   `localStorage` (written before the load).
//! - `leptos`: Leptos's own `examples/todomvc`, built by `bench/app.sh` from
//!   `bench/peers/leptos-todomvc`, todos in `localStorage`.
//!
//! Each app is served by a small static server of its own (same headers for all:
//! `Cache-Control: no-cache`), each run in a fresh browser (cold cache). What is
//! measured, identically for the three:
//!
//! - **load**: navigation start → the 1,000th row is in the DOM (a
//!   `MutationObserver` installed before any page script) and → the frame after it
//!   (`requestAnimationFrame`, then a task); "data → rows" starts at the moment the
//!   data is in the page: the end of the last `/todos` response for ours, the last
//!   `localStorage.getItem` of the todos' key for the others. "requests in sequence"
//!   walks back from the rows through Resource Timing: the request that ended last
//!   before the rows, then the one that ended last before that one started, … down
//!   to the document.
//! - **actions** (one page; then a fresh load for clear completed): **scripting** is
//!   Chrome's own `ScriptDuration` (DevTools `Performance.getMetrics`, the main
//!   thread's time in JS and wasm, microtasks included) from just before the event
//!   is dispatched until the frame after it, minus the same measurement around an
//!   action that does nothing (the harness's own script); **to frame** is
//!   `performance.now()` from the dispatch to that frame (scripting + style +
//!   layout).
//!
//! Knobs: `BENCH_APP_RUNS` (default 5; the table shows medians), `BENCH_APP_TODOS`
//! (1000), `BENCH_APP_ONLY` (comma-separated app names), `BENCH_APP_LEPTOS_DIST`
//! (the built peer; that app is skipped without it).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use e2e::Browser;
use fantoccini::wd::WebDriverCompatibleCommand;
use serde_json::{Value, json};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum App {
    Ours,
    Vanilla,
    Leptos,
}

impl App {
    fn name(self) -> &'static str {
        match self {
            App::Ours => "ours",
            App::Vanilla => "vanilla",
            App::Leptos => "leptos",
        }
    }

    /// The `localStorage` key the peer keeps its todos under.
    fn storage_key(self) -> &'static str {
        match self {
            App::Ours => "",
            App::Vanilla => "todos-vanillajs",
            App::Leptos => "todos-leptos",
        }
    }
}

/// The measured actions, in the order they run on one page (clear completed runs
/// on a fresh load, with half the todos completed as seeded).
const ACTIONS: &[(&str, &str)] = &[
    ("toggle one", "toggle"),
    ("edit one title", "edit"),
    ("filter → Active", "active"),
    ("filter → All", "all"),
    ("toggle all (→ all done)", "toggle_all"),
    ("toggle all (→ all active)", "toggle_all"),
    ("clear completed", "clear"),
];

/// Runs in the page before any of its scripts (DevTools
/// `Page.addScriptToEvaluateOnNewDocument`): records when the list first holds
/// `N` rows, the frame after, and the last read of the todos from localStorage.
const OBSERVER: &str = r#"
(() => {
  const N = __N__;
  const b = window.__bench = { dom: null, frame: null, dataAt: null };
  const getItem = Storage.prototype.getItem;
  Storage.prototype.getItem = function (key) {
    const v = getItem.call(this, key);
    if (b.dom === null && key === __KEY__) b.dataAt = performance.now();
    return v;
  };
  const mo = new MutationObserver(() => {
    const list = document.querySelector('.todo-list');
    if (b.dom === null && list && list.childElementCount >= N) {
      b.dom = performance.now();
      mo.disconnect();
      requestAnimationFrame(() => {
        const c = new MessageChannel();
        c.port1.onmessage = () => { b.frame = performance.now(); };
        c.port2.postMessage(0);
      });
    }
  });
  mo.observe(document, { childList: true, subtree: true });
})();
"#;

/// Waits for the frame after now (rAF, then a task: that frame has been drawn).
const AFTER_FRAME: &str = r#"
const afterFrame = () => new Promise(r => requestAnimationFrame(() => {
  const c = new MessageChannel(); c.port1.onmessage = () => r(); c.port2.postMessage(0);
}));
"#;

/// The actions. Each dispatches the events a person's input would and returns
/// nothing; `check` (run after the frame) says whether it did what it should.
/// `targets` finds an action's element before the measurement starts, so the
/// harness's own lookup (a `querySelectorAll` over the 1,000 rows, ~0.03 ms warm
/// and ~0.1 ms the first time) is not counted as the app's.
const ACTS: &str = r#"
const rows = () => document.querySelectorAll('.todo-list li');
const key = (el, type) => el.dispatchEvent(new KeyboardEvent(type,
  { key: 'Enter', code: 'Enter', keyCode: 13, which: 13, bubbles: true, cancelable: true }));
const targets = {
  toggle: () => rows()[0].querySelector('.toggle'),
  edit: () => rows()[2].querySelector('.edit'),
  toggle_all: () => document.querySelector('.toggle-all'),
  clear: () => document.querySelector('.clear-completed'),
};
const acts = {
  noop: () => {},
  toggle: el => el.click(),
  edit: input => {
    input.value = 'edited title';
    key(input, 'keydown'); key(input, 'keypress'); key(input, 'keyup');
    if (document.activeElement === input) input.blur();
  },
  active: () => { location.hash = '#/active'; },
  all: () => { location.hash = '#/'; },
  toggle_all: el => el.click(),
  clear: el => el.click(),
};
"#;

/// Opens the edit field of the third row (double-click), outside the measurement.
const START_EDIT: &str = r#"
const label = document.querySelectorAll('.todo-list li')[2].querySelector('label');
label.dispatchEvent(new MouseEvent('dblclick', { bubbles: true, cancelable: true }));
"#;

/// A state summary to check each action against.
const STATE: &str = r#"
const rows = [...document.querySelectorAll('.todo-list li')];
return {
  rows: rows.length,
  completed: rows.filter(li => li.classList.contains('completed')).length,
  labels: rows.slice(0, 3).map(li => li.querySelector('label').textContent),
  editing: document.querySelectorAll('.todo-list li.editing').length,
  hash: location.hash,
};
"#;

/// A DevTools command through chromedriver's `goog/cdp/execute`.
#[derive(Debug)]
struct Cdp {
    cmd: &'static str,
    params: Value,
}

impl WebDriverCompatibleCommand for Cdp {
    fn endpoint(
        &self,
        base: &url::Url,
        session: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base.join(&format!(
            "session/{}/goog/cdp/execute",
            session.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        let body = json!({ "cmd": self.cmd, "params": self.params });
        (http::Method::POST, Some(body.to_string()))
    }
}

async fn cdp(b: &Browser, cmd: &'static str, params: Value) -> Result<Value> {
    b.client
        .issue_cmd(Cdp { cmd, params })
        .await
        .with_context(|| format!("DevTools {cmd}"))
}

/// Chrome's cumulative main-thread script time, in ms.
async fn script_ms(b: &Browser) -> Result<f64> {
    let m = cdp(b, "Performance.getMetrics", json!({})).await?;
    m["metrics"]
        .as_array()
        .and_then(|ms| ms.iter().find(|m| m["name"] == "ScriptDuration"))
        .and_then(|m| m["value"].as_f64())
        .map(|s| s * 1000.0)
        .context("no ScriptDuration in Performance.getMetrics")
}

/// Ours's `config.json`: names the API started for the current load.
type Config = std::sync::Arc<std::sync::Mutex<String>>;

/// Serves a directory (and, for ours, a `config.json`) on 127.0.0.1.
struct Static {
    url: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Static {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(dir: PathBuf, config: Option<Config>) -> Result<Static> {
    use axum::http::{StatusCode, Uri, header};
    use axum::response::IntoResponse;
    let handler = move |uri: Uri| {
        let dir = dir.clone();
        let config = config.clone();
        async move {
            let path = uri.path().trim_start_matches('/');
            let path = if path.is_empty() { "index.html" } else { path };
            let body = match (path, &config) {
                ("config.json", Some(c)) => {
                    Some(c.lock().map(|c| c.clone().into_bytes()).unwrap_or_default())
                }
                ("__blank", _) => Some(b"<!doctype html><title>seed</title>".to_vec()),
                _ if path.split('/').any(|p| p == ".." || p.is_empty()) => None,
                _ => std::fs::read(dir.join(path)).ok(),
            };
            let Some(body) = body else {
                return StatusCode::NOT_FOUND.into_response();
            };
            let ext = path.rsplit('.').next().unwrap_or_default();
            let ctype = match ext {
                "html" | "__blank" => "text/html; charset=utf-8",
                "js" => "text/javascript; charset=utf-8",
                "wasm" => "application/wasm",
                "css" => "text/css; charset=utf-8",
                "json" => "application/json",
                _ => "application/octet-stream",
            };
            let ctype = if path == "__blank" {
                "text/html; charset=utf-8"
            } else {
                ctype
            };
            (
                [
                    (header::CONTENT_TYPE, ctype),
                    (header::CACHE_CONTROL, "no-cache"),
                ],
                body,
            )
                .into_response()
        }
    };
    let router = axum::Router::new().fallback(handler);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    Ok(Static { url, task })
}

/// The seeded todos: `n`, every second one completed.
fn seed_todos(n: usize) -> Vec<(String, bool)> {
    (0..n)
        .map(|i| (format!("Todo number {:04}", i + 1), i % 2 == 1))
        .collect()
}

/// Creates the seeded todos in a local API's stage `dev` over HTTP.
async fn seed_api(base: &str, n: usize) -> Result<()> {
    let client = reqwest::Client::new();
    for (title, completed) in seed_todos(n) {
        let created: Value = client
            .post(format!("{base}/todos"))
            .json(&json!({ "title": title }))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        if completed {
            let id = created["id"].as_str().context("created todo has no id")?;
            client
                .patch(format!("{base}/todos/{id}"))
                .json(&json!({ "completed": true }))
                .send()
                .await?
                .error_for_status()?;
        }
    }
    Ok(())
}

/// Ours's API: the seeded SQLite database is made once (1,500 requests), and
/// every load gets a fresh `todo-api` on a copy of it.
struct OursApi {
    dir: PathBuf,
    config: Config,
    api: std::sync::Mutex<Option<e2e::Api>>,
}

impl OursApi {
    const TEMPLATE: &str = "seeded.sqlite3";

    async fn new(dir: PathBuf, n: usize) -> Result<Self> {
        let mut api = e2e::Api::local(&dir.join(Self::TEMPLATE))?;
        seed_api(&format!("{}/dev", api.url), n).await?;
        api.stop();
        Ok(Self {
            dir,
            config: Config::default(),
            api: std::sync::Mutex::new(None),
        })
    }

    /// Replaces the running API with one on a fresh copy of the seeded data.
    fn reset(&self) -> Result<()> {
        let mut slot = self.api.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
        if let Some(mut old) = slot.take() {
            old.stop();
        }
        // The database and its WAL/SHM files, if the stopped server left any.
        for suffix in ["", "-wal", "-shm"] {
            let run = self.dir.join(format!("run.sqlite3{suffix}"));
            let _ = std::fs::remove_file(&run);
            let from = self.dir.join(format!("{}{suffix}", Self::TEMPLATE));
            if from.exists() {
                std::fs::copy(&from, &run)?;
            }
        }
        let api = e2e::Api::local(&self.dir.join("run.sqlite3"))?;
        let config = json!({ "stage": "dev", "apiBase": format!("{}/dev", api.url) });
        *self
            .config
            .lock()
            .map_err(|_| anyhow::anyhow!("poisoned"))? = config.to_string();
        *slot = Some(api);
        Ok(())
    }
}

/// The seeded todos as the peer stores them.
fn seed_storage(app: App, n: usize) -> String {
    let todos: Vec<Value> = seed_todos(n)
        .into_iter()
        .enumerate()
        .map(|(i, (title, completed))| match app {
            App::Leptos => json!({
                "id": format!("00000000-0000-4000-8000-{:012}", i),
                "title": title, "completed": completed,
            }),
            _ => json!({ "id": 1_600_000_000_000u64 + i as u64, "title": title, "completed": completed }),
        })
        .collect();
    Value::Array(todos).to_string()
}

/// One app's server, and how to put the todos in place before a load.
struct Target {
    app: App,
    site: Static,
    api: Option<OursApi>,
    n: usize,
}

impl Target {
    async fn seed(&self, b: &Browser) -> Result<()> {
        match &self.api {
            Some(api) => api.reset(),
            None => {
                // Same origin as the app, but a page of our own: the app has not
                // read anything yet when the todos are written.
                b.client.goto(&format!("{}/__blank", self.site.url)).await?;
                b.client
                    .execute(
                        "localStorage.clear(); localStorage.setItem(arguments[0], arguments[1]);",
                        vec![
                            json!(self.app.storage_key()),
                            json!(seed_storage(self.app, self.n)),
                        ],
                    )
                    .await?;
                Ok(())
            }
        }
    }

    /// Seeds, opens the app and waits until the list has been drawn.
    async fn load(&self, b: &Browser, rows: usize) -> Result<Value> {
        self.seed(b).await?;
        let source = OBSERVER
            .replace("__N__", &rows.to_string())
            .replace("__KEY__", &json!(self.app.storage_key()).to_string());
        let script = cdp(
            b,
            "Page.addScriptToEvaluateOnNewDocument",
            json!({ "source": source }),
        )
        .await?;
        b.client.goto(&format!("{}/", self.site.url)).await?;
        b.wait_js("window.__bench && window.__bench.frame !== null")
            .await
            .with_context(|| format!("{}: the list never held {rows} rows", self.app.name()))?;
        cdp(b, "Page.removeScriptToEvaluateOnNewDocument", script).await?;
        let timings = b
            .js(r#"
                const nav = performance.getEntriesByType('navigation')[0];
                return {
                  bench: window.__bench,
                  doc: { name: 'document', start: 0, end: nav.responseEnd },
                  res: performance.getEntriesByType('resource')
                    .map(e => ({ name: e.name, start: e.startTime, end: e.responseEnd })),
                };"#)
            .await?;
        Ok(timings)
    }
}

struct LoadTimes {
    /// How many requests fetched `config.json` (1: the preload was used).
    config_fetches: usize,
    to_dom: f64,
    to_frame: f64,
    data_to_dom: f64,
    chain: Vec<String>,
}

fn load_times(app: App, t: &Value) -> Result<LoadTimes> {
    let num = |v: &Value, what: &str| v.as_f64().with_context(|| format!("no {what} in {t}"));
    let dom = num(&t["bench"]["dom"], "dom")?;
    let frame = num(&t["bench"]["frame"], "frame")?;
    let mut nodes: Vec<(String, f64, f64)> =
        vec![("document".into(), 0.0, num(&t["doc"]["end"], "doc")?)];
    for r in t["res"].as_array().into_iter().flatten() {
        let name = r["name"].as_str().unwrap_or_default();
        // The last path segment names the request well enough (app-<hash>_bg.wasm, todos?limit=…).
        let short = name.rsplit('/').next().unwrap_or(name).to_owned();
        // Not on any app's way to its rows: the browser's own favicon request,
        // and todomvc-common's sidebar text (learn.json, a 404 here).
        if short == "favicon.ico" || short == "learn.json" {
            continue;
        }
        nodes.push((short, num(&r["start"], "start")?, num(&r["end"], "end")?));
    }
    let data_at = match app {
        App::Ours => nodes
            .iter()
            .filter(|(n, ..)| n.starts_with("todos"))
            .map(|(_, _, end)| *end)
            .fold(None, |m: Option<f64>, e| Some(m.map_or(e, |m| m.max(e))))
            .context("ours loaded without a /todos request")?,
        _ => num(&t["bench"]["dataAt"], "dataAt")?,
    };
    // Walk back from the rows: the request that ended last before each point.
    let mut chain = Vec::new();
    let mut at = dom;
    while let Some((name, start, _)) = nodes
        .iter()
        .filter(|(_, _, end)| *end <= at)
        .max_by(|a, b| a.2.total_cmp(&b.2))
    {
        chain.push(name.clone());
        if name == "document" {
            break;
        }
        at = *start;
    }
    chain.reverse();
    Ok(LoadTimes {
        config_fetches: nodes.iter().filter(|(n, ..)| n == "config.json").count(),
        to_dom: dom,
        to_frame: frame,
        data_to_dom: dom - data_at,
        chain,
    })
}

/// Runs one action: `(scripting ms, dispatch → frame ms)` and the state after.
async fn measure(b: &Browser, act: &str) -> Result<(f64, f64, Value)> {
    // Let anything pending (API answers, earlier effects) settle first; find
    // the action's element meanwhile.
    b.client
        .execute_async(
            &format!(
                "{AFTER_FRAME} {ACTS} const done = arguments[arguments.length - 1];
                 window.__benchTarget = targets[arguments[0]] ? targets[arguments[0]]() : null;
                 afterFrame().then(() => setTimeout(done, 50));"
            ),
            vec![json!(act)],
        )
        .await?;
    let before = script_ms(b).await?;
    let wall = b
        .client
        .execute_async(
            &format!(
                "{AFTER_FRAME} {ACTS} const done = arguments[arguments.length - 1];
                 const el = window.__benchTarget; const t0 = performance.now(); acts[arguments[0]](el);
                 afterFrame().then(() => done(performance.now() - t0));"
            ),
            vec![json!(act)],
        )
        .await?;
    let after = script_ms(b).await?;
    let state = b.js(STATE).await?;
    Ok((after - before, wall.as_f64().unwrap_or(f64::NAN), state))
}

/// The harness's own script time around an action (subtracted from each).
async fn baseline(b: &Browser) -> Result<f64> {
    let mut v = Vec::new();
    for _ in 0..5 {
        v.push(measure(b, "noop").await?.0);
    }
    Ok(median(&mut v))
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Checks that an action did what it should, so a no-op is never timed as fast.
fn check(name: &str, n: usize, s: &Value) -> Result<()> {
    let rows = s["rows"].as_u64().unwrap_or_default() as usize;
    let completed = s["completed"].as_u64().unwrap_or_default() as usize;
    let half = n / 2;
    let ok = match name {
        "toggle one" => rows == n && completed == half + 1,
        "edit one title" => s["labels"][2] == "edited title" && s["editing"] == 0,
        "filter → Active" => rows == n - half - 1 && completed == 0,
        "filter → All" => rows == n,
        "toggle all (→ all done)" => rows == n && completed == n,
        "toggle all (→ all active)" => rows == n && completed == 0,
        "clear completed" => rows == n - half && completed == 0,
        _ => true,
    };
    ensure!(ok, "`{name}` did not do its job: {s}");
    Ok(())
}

#[derive(Default)]
struct Samples {
    config_fetches: usize,
    to_dom: Vec<f64>,
    to_frame: Vec<f64>,
    data_to_dom: Vec<f64>,
    chain: Vec<String>,
    scripting: Vec<Vec<f64>>,
    wall: Vec<Vec<f64>>,
}

async fn run_once(t: &Target, s: &mut Samples) -> Result<()> {
    let b = Browser::start().await?;
    cdp(&b, "Performance.enable", json!({})).await?;
    let timings = t.load(&b, t.n).await?;
    let lt = load_times(t.app, &timings)?;
    s.to_dom.push(lt.to_dom);
    s.to_frame.push(lt.to_frame);
    s.data_to_dom.push(lt.data_to_dom);
    s.chain = lt.chain;
    s.config_fetches = s.config_fetches.max(lt.config_fetches);
    let base = baseline(&b).await?;
    let mut results = Vec::new();
    for (i, (name, act)) in ACTIONS.iter().enumerate() {
        if *act == "clear" {
            // A fresh page with the seeded state: half the todos completed.
            t.load(&b, t.n).await?;
        }
        if *act == "edit" {
            b.js(START_EDIT).await?;
            b.wait_js("document.querySelectorAll('.todo-list li.editing').length === 1")
                .await?;
        }
        let (script, wall, state) = measure(&b, act).await?;
        check(name, t.n, &state).with_context(|| t.app.name())?;
        results.push((i, script - base, wall));
    }
    for (i, script, wall) in results {
        s.scripting[i].push(script);
        s.wall[i].push(wall);
    }
    b.close().await
}

fn fmt_ms(v: f64) -> String {
    if v.is_nan() {
        "–".into()
    } else if v < 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.0}")
    }
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "a benchmark: bench/app.sh runs it"]
async fn bench_app_at_1000_todos() -> Result<()> {
    let runs: usize = std::env::var("BENCH_APP_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let n: usize = std::env::var("BENCH_APP_TODOS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let only = std::env::var("BENCH_APP_ONLY").unwrap_or_default();
    let root = testkit::repo_root();
    let leptos_dist = std::env::var_os("BENCH_APP_LEPTOS_DIST").map(PathBuf::from);
    let mut apps = vec![App::Ours, App::Vanilla];
    if leptos_dist.is_some() {
        apps.push(App::Leptos);
    }
    apps.retain(|a| only.is_empty() || only.split(',').any(|o| o.trim() == a.name()));
    ensure!(!apps.is_empty(), "no app to run (BENCH_APP_ONLY={only:?})");

    let tmp = tempfile::tempdir()?;
    let mut targets = Vec::new();
    for app in &apps {
        let target = match app {
            App::Ours => {
                eprintln!("[bench] seeding the API with {n} todos");
                let api = OursApi::new(tmp.path().to_owned(), n).await?;
                let site = serve(e2e::dist()?, Some(api.config.clone())).await?;
                Target {
                    app: *app,
                    site,
                    api: Some(api),
                    n,
                }
            }
            App::Vanilla => Target {
                app: *app,
                site: serve(root.join("bench/peers/vanillajs"), None).await?,
                api: None,
                n,
            },
            App::Leptos => {
                let dir = leptos_dist.clone().unwrap_or_default();
                ensure!(
                    dir.join("index.html").exists(),
                    "{} has no index.html",
                    dir.display()
                );
                Target {
                    app: *app,
                    site: serve(dir, None).await?,
                    api: None,
                    n,
                }
            }
        };
        targets.push(target);
    }

    let mut samples: Vec<Samples> = apps
        .iter()
        .map(|_| Samples {
            scripting: vec![Vec::new(); ACTIONS.len()],
            wall: vec![Vec::new(); ACTIONS.len()],
            ..Samples::default()
        })
        .collect();
    let started = Instant::now();
    // Interleaved: run k of every app before run k+1 of any, so a busy spell on
    // the machine hits all three alike.
    for run in 0..runs {
        for (t, s) in targets.iter().zip(samples.iter_mut()) {
            eprintln!(
                "[bench] {} run {}/{runs} ({:.0?})",
                t.app.name(),
                run + 1,
                started.elapsed()
            );
            run_once(t, s)
                .await
                .with_context(|| format!("{} run {}", t.app.name(), run + 1))?;
        }
    }
    tokio::time::sleep(Duration::from_millis(10)).await;
    print_table(&apps, &mut samples, runs, n);
    Ok(())
}

fn print_table(apps: &[App], samples: &mut [Samples], runs: usize, n: usize) {
    let head: Vec<&str> = apps
        .iter()
        .map(|a| match a {
            App::Ours => "ours (Leptos + API)",
            App::Vanilla => "tastejs vanilla-JS",
            App::Leptos => "Leptos examples/todomvc",
        })
        .collect();
    println!("Medians of {runs} runs, {n} todos (half completed as loaded), ms.\n");
    println!("| | {} |", head.join(" | "));
    println!("| --- |{}", " ---: |".repeat(apps.len()));
    let row = |label: &str, cells: Vec<String>| println!("| {label} | {} |", cells.join(" | "));
    row(
        "navigation → 1,000 rows in the DOM",
        samples
            .iter_mut()
            .map(|s| fmt_ms(median(&mut s.to_dom)))
            .collect(),
    );
    row(
        "navigation → the frame showing them",
        samples
            .iter_mut()
            .map(|s| fmt_ms(median(&mut s.to_frame)))
            .collect(),
    );
    row(
        "data in the page → rows in the DOM",
        samples
            .iter_mut()
            .map(|s| fmt_ms(median(&mut s.data_to_dom)))
            .collect(),
    );
    row(
        "requests in sequence before the rows",
        samples
            .iter()
            .map(|s| format!("{} ({})", s.chain.len(), s.chain.join(" → ")))
            .collect(),
    );
    row(
        "requests for config.json (1: the preload was used)",
        apps.iter()
            .zip(samples.iter())
            .map(|(a, s)| match a {
                App::Ours => s.config_fetches.to_string(),
                _ => "–".into(),
            })
            .collect(),
    );
    for (i, (name, _)) in ACTIONS.iter().enumerate() {
        row(
            &format!("{name}: scripting / to frame"),
            samples
                .iter_mut()
                .map(|s| {
                    format!(
                        "{} / {}",
                        fmt_ms(median(&mut s.scripting[i])),
                        fmt_ms(median(&mut s.wall[i]))
                    )
                })
                .collect(),
        );
    }
}
