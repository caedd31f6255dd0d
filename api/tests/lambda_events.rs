//! The Lambda front door in process: API Gateway REST (v1) proxy events, built
//! from the recorded-shape fixture `fixtures/rest-v1-proxy-event.json`, go
//! through `lambda_http`'s adapter (exactly what `bootstrap` runs) into the
//! router, onto DynamoDB on moto with one table per stage. Checked: status,
//! headers (CORS), bodies, base64 bodies, and that each stage's requests touch
//! only the table its stage variable names.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use api::{Store, TableSource};
use base64::Engine;
use lambda_http::request::LambdaRequest;
use lambda_http::{Adapter, Context, LambdaEvent};
use serde_json::{Value, json};
use tower::ServiceExt;

const FIXTURE: &str = include_str!("fixtures/rest-v1-proxy-event.json");

/// Log lines written by the code under test, captured for assertions.
fn captured_logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&buf);
        let _ = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || LogWriter(Arc::clone(&sink)))
            .try_init();
        buf
    })
    .clone()
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl Write for LogWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A REST v1 proxy event for `method` on `path` (below the stage, as API
/// Gateway sends it) of `stage`, with `vars` as the stage variables.
struct Event(Value);

impl Event {
    fn new(method: &str, stage: &str, path: &str, vars: Option<Value>) -> Event {
        let mut e: Value = serde_json::from_str(FIXTURE).expect("fixture is JSON");
        e["httpMethod"] = json!(method);
        e["path"] = json!(path);
        e["pathParameters"] = json!({ "proxy": path.trim_start_matches('/') });
        e["stageVariables"] = vars.unwrap_or(Value::Null);
        let ctx = &mut e["requestContext"];
        ctx["httpMethod"] = json!(method);
        ctx["stage"] = json!(stage);
        ctx["path"] = json!(format!("/{stage}{path}"));
        Event(e)
    }

    fn header(mut self, name: &str, value: &str) -> Event {
        self.0["headers"][name] = json!(value);
        self.0["multiValueHeaders"][name] = json!([value]);
        self
    }

    fn query(mut self, name: &str, values: &[&str]) -> Event {
        self.0["queryStringParameters"] = json!({ name: values.last() });
        self.0["multiValueQueryStringParameters"] = json!({ name: values });
        self
    }

    /// Several query parameters, one value each.
    fn queries(mut self, pairs: &[(&str, &str)]) -> Event {
        let single: serde_json::Map<String, Value> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), json!(v)))
            .collect();
        let multi: serde_json::Map<String, Value> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), json!([v])))
            .collect();
        self.0["queryStringParameters"] = Value::Object(single);
        self.0["multiValueQueryStringParameters"] = Value::Object(multi);
        self
    }

    /// A JSON body, sent base64-encoded as API Gateway does for binary media types.
    fn json_body(self, body: &Value, base64: bool) -> Event {
        let mut e = self.header("Content-Type", "application/json");
        let text = body.to_string();
        if base64 {
            e.0["body"] = json!(base64::engine::general_purpose::STANDARD.encode(text));
            e.0["isBase64Encoded"] = json!(true);
        } else {
            e.0["body"] = json!(text);
        }
        e
    }
}

/// What API Gateway receives back from the function.
#[derive(Debug)]
struct Reply {
    status: u16,
    headers: serde_json::Map<String, Value>,
    body: Option<String>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<String> {
        let multi = self.headers.get(name)?;
        Some(
            multi
                .as_array()?
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(","),
        )
    }

    fn json(&self) -> Value {
        assert_eq!(
            self.header("content-type").as_deref(),
            Some("application/json"),
            "{self:?}"
        );
        serde_json::from_str(self.body.as_deref().unwrap_or("")).expect("JSON body")
    }
}

/// The function: `lambda_http`'s adapter around the API's router.
struct Function {
    store: Store,
}

impl Function {
    async fn invoke(&self, event: Event) -> Reply {
        let request: LambdaRequest =
            serde_json::from_value(event.0).expect("the event is a REST v1 proxy event");
        let adapter = Adapter::from(api::router_with(
            self.store.clone(),
            api::Cors::StageVariable("allowedOrigin".into()),
        ));
        let response = adapter
            .oneshot(LambdaEvent::new(request, Context::default()))
            .await
            .expect("the router is infallible");
        let v = serde_json::to_value(response).expect("the response serialises");
        assert_eq!(
            v["isBase64Encoded"],
            json!(false),
            "JSON answers travel as text: {v}"
        );
        Reply {
            status: v["statusCode"].as_u64().expect("statusCode") as u16,
            headers: v["multiValueHeaders"]
                .as_object()
                .cloned()
                .unwrap_or_default(),
            body: v["body"].as_str().map(str::to_owned),
        }
    }
}

struct Setup {
    function: Function,
    client: aws_sdk_dynamodb::Client,
    dev_table: String,
    prod_table: String,
    _moto: Arc<testkit::Server>,
}

impl Setup {
    async fn new() -> Setup {
        let moto = common::shared_moto();
        let client = common::dynamodb_client(&moto);
        let dev_table = common::fresh_table(&client).await;
        let prod_table = common::fresh_table(&client).await;
        let store = Store::dynamodb(
            client.clone(),
            TableSource::StageVariable("tableName".into()),
        );
        Setup {
            function: Function { store },
            client,
            dev_table,
            prod_table,
            _moto: moto,
        }
    }

    fn vars(&self, stage: &str) -> Value {
        let (alias, table) = match stage {
            "dev" => ("DEV", &self.dev_table),
            _ => ("PROD", &self.prod_table),
        };
        json!({ "lambdaAlias": alias, "tableName": table, "allowedOrigin": SITE })
    }

    fn event(&self, method: &str, stage: &str, path: &str) -> Event {
        Event::new(method, stage, path, Some(self.vars(stage)))
    }

    /// Every item of a table (a Scan is fine in a test's assertion, never on the
    /// request path).
    async fn items(&self, table: &str) -> usize {
        let out = self
            .client
            .scan()
            .table_name(table)
            .send()
            .await
            .expect("scan");
        out.items.unwrap_or_default().len()
    }
}

/// The site origin of the fixture's requests (its `Origin` header), configured as the
/// stages' `allowedOrigin` by [`Setup::vars`].
const SITE: &str = "https://d111111abcdef8.cloudfront.net";

fn assert_cors(r: &Reply) {
    assert_eq!(
        r.header("access-control-allow-origin").as_deref(),
        Some(SITE),
        "CORS on every answer: {r:?}"
    );
}

#[tokio::test]
async fn rest_v1_events_serve_the_contract_on_each_stages_table() {
    let s = Setup::new().await;
    let f = &s.function;

    // POST with a base64 body (binary media type) and with a plain one.
    let r = f
        .invoke(
            s.event("POST", "dev", "/todos")
                .json_body(&json!({"title": "  from base64 "}), true),
        )
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    assert_cors(&r);
    let first = r.json();
    assert_eq!(first["title"], "from base64");
    assert_eq!(first["completed"], false);
    let r = f
        .invoke(
            s.event("POST", "dev", "/todos")
                .json_body(&json!({"title": "plain", "completed": true}), false),
        )
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    let second = r.json();

    // GET the list in creation order, and one todo.
    let r = f.invoke(s.event("GET", "dev", "/todos")).await;
    assert_eq!(r.status, 200);
    assert_cors(&r);
    assert_eq!(r.json(), json!([first.clone(), second.clone()]));
    let id = first["id"].as_str().expect("id");
    let r = f
        .invoke(s.event("GET", "dev", &format!("/todos/{id}")))
        .await;
    assert_eq!((r.status, r.json()), (200, first.clone()));

    // Prod has its own table: nothing of dev's is visible or reachable there.
    let r = f.invoke(s.event("GET", "prod", "/todos")).await;
    assert_eq!((r.status, r.json()), (200, json!([])));
    let r = f
        .invoke(s.event("GET", "prod", &format!("/todos/{id}")))
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["code"], "not_found");
    let r = f
        .invoke(s.event("DELETE", "prod", &format!("/todos/{id}")))
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(
        (s.items(&s.dev_table).await, s.items(&s.prod_table).await),
        (2, 0)
    );

    // PATCH one, toggle-all, clear-completed (with the query as API Gateway sends it).
    let r = f
        .invoke(
            s.event("PATCH", "dev", &format!("/todos/{id}"))
                .json_body(&json!({"title": "renamed"}), true),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["title"], "renamed");
    let r = f
        .invoke(
            s.event("PATCH", "dev", "/todos")
                .json_body(&json!({"completed": true}), false),
        )
        .await;
    assert_eq!((r.status, r.json()), (200, json!({"updated": 1})));
    let r = f.invoke(s.event("DELETE", "dev", "/todos")).await;
    assert_eq!(r.status, 400, "clear-completed needs ?completed=true");
    let r = f
        .invoke(
            s.event("DELETE", "dev", "/todos")
                .query("completed", &["true"]),
        )
        .await;
    assert_eq!((r.status, r.json()), (200, json!({"deleted": 2})));

    // DELETE one: 204, no body.
    let r = f
        .invoke(
            s.event("POST", "dev", "/todos")
                .json_body(&json!({"title": "bye"}), false),
        )
        .await;
    let bye = r.json()["id"].as_str().expect("id").to_owned();
    let r = f
        .invoke(s.event("DELETE", "dev", &format!("/todos/{bye}")))
        .await;
    assert_eq!(r.status, 204);
    assert_cors(&r);
    assert!(r.body.as_deref().unwrap_or("").is_empty(), "{r:?}");

    // A prod write lands in prod's table only.
    let r = f
        .invoke(
            s.event("POST", "prod", "/todos")
                .json_body(&json!({"title": "prod"}), true),
        )
        .await;
    assert_eq!(r.status, 201);
    assert_eq!(
        (s.items(&s.dev_table).await, s.items(&s.prod_table).await),
        (0, 1)
    );

    // Errors are the contract's JSON, with CORS.
    let r = f
        .invoke(
            s.event("POST", "dev", "/todos")
                .header("Content-Type", "application/json")
                .json_body(&json!({"title": ""}), false),
        )
        .await;
    assert_eq!(
        (r.status, r.json()["code"].clone()),
        (400, json!("invalid_title"))
    );
    assert_cors(&r);
    let r = f.invoke(s.event("PUT", "dev", "/todos")).await;
    assert_eq!(r.status, 405);
    assert!(r.header("allow").is_some_and(|a| a.contains("GET")));
}

/// Paging through API Gateway: the query arrives as the event's parameters, the
/// `Link` to the next page leaves as a header the site's browser may read.
#[tokio::test]
async fn a_list_page_links_the_next_one_through_api_gateway() {
    let s = Setup::new().await;
    let f = &s.function;
    let mut created = Vec::new();
    for title in ["a", "b", "c"] {
        let r = f
            .invoke(
                s.event("POST", "dev", "/todos")
                    .json_body(&json!({ "title": title }), false),
            )
            .await;
        assert_eq!(r.status, 201, "{r:?}");
        created.push(r.json());
    }

    let r = f
        .invoke(s.event("GET", "dev", "/todos").queries(&[("limit", "2")]))
        .await;
    assert_eq!((r.status, r.json()), (200, json!(created[..2])));
    assert_cors(&r);
    let exposed = r
        .header("access-control-expose-headers")
        .unwrap_or_default()
        .to_ascii_lowercase();
    assert!(exposed.contains("link"), "{r:?}");
    let link = r.header("link").expect("a Link to the next page");
    let target = link
        .strip_prefix("<?")
        .and_then(|l| l.strip_suffix(">; rel=\"next\""))
        .unwrap_or_else(|| panic!("a query-only relative Link: {link}"));
    let pairs: Vec<(&str, &str)> = target
        .split('&')
        .map(|p| p.split_once('=').expect("name=value"))
        .collect();
    assert_eq!(pairs[0], ("limit", "2"), "{link}");

    let r = f
        .invoke(s.event("GET", "dev", "/todos").queries(&pairs))
        .await;
    assert_eq!((r.status, r.json()), (200, json!(created[2..])));
    assert_eq!(r.header("link"), None, "the last page links nowhere: {r:?}");

    let r = f
        .invoke(s.event("GET", "dev", "/todos").queries(&[("limit", "0")]))
        .await;
    assert_eq!(
        (r.status, r.json()["code"].clone()),
        (400, json!("invalid_query"))
    );
    assert_cors(&r);
}

#[tokio::test]
async fn options_preflight_is_answered_by_the_function() {
    let s = Setup::new().await;
    let r = s
        .function
        .invoke(
            s.event("OPTIONS", "dev", "/todos/abc")
                .header("Access-Control-Request-Method", "PATCH")
                .header("Access-Control-Request-Headers", "content-type"),
        )
        .await;
    assert!((200..300).contains(&r.status), "{r:?}");
    assert_cors(&r);
    let methods = r.header("access-control-allow-methods").unwrap_or_default();
    for m in ["GET", "POST", "PATCH", "DELETE", "OPTIONS"] {
        assert!(methods.contains(m), "{methods}");
    }
    assert!(
        r.header("access-control-allow-headers")
            .is_some_and(|h| h.to_ascii_lowercase().contains("content-type"))
    );
    assert_eq!(
        (s.items(&s.dev_table).await, s.items(&s.prod_table).await),
        (0, 0)
    );
}

#[tokio::test]
async fn a_missing_or_wrong_stage_variable_is_a_clear_500_and_a_log_line() {
    let logs = captured_logs();
    let s = Setup::new().await;
    let f = &s.function;

    // No stage variables at all.
    let r = f
        .invoke(Event::new("GET", "prod", "/todos", None).header("X-Case", "none"))
        .await;
    assert_eq!(r.status, 500, "{r:?}");
    // No stage variables, so no `allowedOrigin` either: the public site gets no CORS
    // access to a stage that is not configured for it.
    assert_eq!(r.header("access-control-allow-origin"), None, "{r:?}");
    let body = r.json();
    assert_eq!(body["code"], "stage_not_configured");
    let msg = body["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains("tableName") && msg.contains("\"prod\""),
        "{msg}"
    );

    // Other variables, but not tableName; then a value that is no table name.
    let r = f
        .invoke(
            Event::new("POST", "dev", "/todos", Some(json!({"lambdaAlias": "DEV"})))
                .json_body(&json!({"title": "x"}), false),
        )
        .await;
    assert_eq!(
        (r.status, r.json()["code"].clone()),
        (500, json!("stage_not_configured"))
    );
    let r = f
        .invoke(Event::new(
            "GET",
            "dev",
            "/todos",
            Some(json!({"tableName": "no such/table"})),
        ))
        .await;
    assert_eq!(r.status, 500);
    let msg = r.json()["message"].as_str().unwrap_or_default().to_owned();
    assert!(
        msg.contains("no such/table") && msg.contains("tableName"),
        "{msg}"
    );

    // A valid name of a table that does not exist: 500, details only in the log.
    let r = f
        .invoke(Event::new(
            "GET",
            "dev",
            "/todos",
            Some(json!({"tableName": "todos-missing"})),
        ))
        .await;
    assert_eq!(
        (r.status, r.json()["code"].clone()),
        (500, json!("internal"))
    );

    assert_eq!(
        (s.items(&s.dev_table).await, s.items(&s.prod_table).await),
        (0, 0)
    );
    let text =
        String::from_utf8_lossy(&logs.lock().unwrap_or_else(|e| e.into_inner())).into_owned();
    for needle in [
        "stage \"prod\" has no stage variable \"tableName\"",
        "stage \"dev\" has no stage variable \"tableName\"",
        "todos-missing",
    ] {
        assert!(
            text.contains(needle),
            "no log line with {needle:?} in:\n{text}"
        );
    }
}

#[tokio::test]
async fn the_path_keeps_the_stage_so_another_stages_path_is_not_found() {
    let s = Setup::new().await;
    // API Gateway's `path` is below the stage; lambda_http puts the stage back in
    // front, so a prod event for "/dev/todos" is /prod/dev/todos: no such route.
    let r = s
        .function
        .invoke(s.event("GET", "prod", "/dev/todos"))
        .await;
    assert_eq!(
        (r.status, r.json()["code"].clone()),
        (404, json!("not_found"))
    );
    let r = s
        .function
        .invoke(
            s.event("POST", "prod", "/dev/todos")
                .json_body(&json!({"title": "x"}), false),
        )
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(
        (s.items(&s.dev_table).await, s.items(&s.prod_table).await),
        (0, 0)
    );
}

/// Each stage admits only its own site: the dev site's origin gets no CORS access to
/// the prod stage, and a stage without `allowedOrigin` admits no public origin.
#[tokio::test]
async fn cors_admits_only_the_stages_own_site() {
    let s = Setup::new().await;
    let prod_site = "https://dprod22222222.cloudfront.net";
    let mut prod_vars = s.vars("prod");
    prod_vars["allowedOrigin"] = json!(prod_site);
    let preflight = |origin: &str, vars: Option<Value>| {
        Event::new("OPTIONS", "prod", "/todos", vars)
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "POST")
            .header("Access-Control-Request-Headers", "content-type")
    };

    let r = s
        .function
        .invoke(preflight(prod_site, Some(prod_vars.clone())))
        .await;
    assert_eq!(
        r.header("access-control-allow-origin").as_deref(),
        Some(prod_site),
        "{r:?}"
    );
    assert!(
        r.header("vary")
            .is_some_and(|v| v.to_ascii_lowercase().contains("origin")),
        "{r:?}"
    );

    let r = s
        .function
        .invoke(preflight(SITE, Some(prod_vars.clone())))
        .await;
    assert_eq!(
        r.header("access-control-allow-origin"),
        None,
        "dev's site on prod: {r:?}"
    );
    let r = s
        .function
        .invoke(Event::new("GET", "prod", "/todos", Some(prod_vars)).header("Origin", SITE))
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("access-control-allow-origin"), None, "{r:?}");

    let mut unconfigured = s.vars("prod");
    unconfigured
        .as_object_mut()
        .expect("vars are an object")
        .remove("allowedOrigin");
    let r = s
        .function
        .invoke(preflight(prod_site, Some(unconfigured.clone())))
        .await;
    assert_eq!(r.header("access-control-allow-origin"), None, "{r:?}");
    let r = s
        .function
        .invoke(preflight("http://127.0.0.1:8080", Some(unconfigured)))
        .await;
    assert_eq!(
        r.header("access-control-allow-origin").as_deref(),
        Some("http://127.0.0.1:8080"),
        "{r:?}"
    );
}
