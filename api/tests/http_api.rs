//! Behaviour tests: the real router on a loopback port, called over HTTP.

mod common;

use api::Store;
use common::{Server, assert_error, json_of};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

fn assert_todo_shape(v: &Value) {
    let obj = v
        .as_object()
        .unwrap_or_else(|| panic!("todo is an object: {v}"));
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        ["completed", "createdAt", "id", "title"],
        "todo keys: {v}"
    );
    assert!(v["id"].as_str().is_some_and(|s| !s.is_empty()), "id: {v}");
    assert!(v["title"].is_string(), "title: {v}");
    assert!(v["completed"].is_boolean(), "completed: {v}");
    let created = v["createdAt"].as_str().expect("createdAt is a string");
    let parsed =
        time::OffsetDateTime::parse(created, &time::format_description::well_known::Rfc3339)
            .unwrap_or_else(|e| panic!("createdAt {created:?} is not RFC 3339: {e}"));
    assert_eq!(parsed.offset(), time::UtcOffset::UTC, "createdAt is UTC");
    assert!(created.ends_with('Z'), "createdAt uses Z: {created}");
}

#[tokio::test]
async fn healthz_answers_ok() {
    let s = Server::in_memory().await;
    let res = s.get("/healthz").await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.text().await.unwrap(), "ok");
}

#[tokio::test]
async fn full_todo_lifecycle() {
    let s = Server::in_memory().await;

    assert!(s.list("dev").await.is_empty());

    // POST trims the title and defaults completed to false.
    let res = s
        .post_json("/dev/todos", &json!({"title": "  buy milk \n"}))
        .await;
    let created = json_of(res, StatusCode::CREATED).await;
    assert_todo_shape(&created);
    assert_eq!(created["title"], "buy milk");
    assert_eq!(created["completed"], false);
    let id = created["id"].as_str().unwrap().to_owned();

    // POST honours an explicit completed.
    let res = s
        .post_json(
            "/dev/todos",
            &json!({"title": "done already", "completed": true}),
        )
        .await;
    let second = json_of(res, StatusCode::CREATED).await;
    assert_eq!(second["completed"], true);
    assert_ne!(second["id"], created["id"], "ids are unique");

    // GET one.
    let got = json_of(s.get(&format!("/dev/todos/{id}")).await, StatusCode::OK).await;
    assert_eq!(got, created);

    // GET list, in creation order.
    assert_eq!(s.list("dev").await, vec![created.clone(), second.clone()]);

    // PATCH title only.
    let res = s
        .patch_json(
            &format!("/dev/todos/{id}"),
            &json!({"title": "  buy oat milk  "}),
        )
        .await;
    let patched = json_of(res, StatusCode::OK).await;
    assert_todo_shape(&patched);
    assert_eq!(patched["title"], "buy oat milk");
    assert_eq!(patched["completed"], false);
    assert_eq!(patched["id"], created["id"]);
    assert_eq!(patched["createdAt"], created["createdAt"]);

    // PATCH completed only.
    let res = s
        .patch_json(&format!("/dev/todos/{id}"), &json!({"completed": true}))
        .await;
    let patched = json_of(res, StatusCode::OK).await;
    assert_eq!(patched["title"], "buy oat milk");
    assert_eq!(patched["completed"], true);

    // PATCH both.
    let res = s
        .patch_json(
            &format!("/dev/todos/{id}"),
            &json!({"title": "x", "completed": false}),
        )
        .await;
    let patched = json_of(res, StatusCode::OK).await;
    assert_eq!(
        (patched["title"].as_str(), patched["completed"].as_bool()),
        (Some("x"), Some(false))
    );
    let got = json_of(s.get(&format!("/dev/todos/{id}")).await, StatusCode::OK).await;
    assert_eq!(got, patched, "GET reflects the PATCH");

    // DELETE one: 204 with an empty body, then it is gone.
    let res = s.delete(&format!("/dev/todos/{id}")).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert!(res.bytes().await.unwrap().is_empty());
    assert_error(
        s.get(&format!("/dev/todos/{id}")).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    assert_error(
        s.delete(&format!("/dev/todos/{id}")).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    assert_error(
        s.patch_json(&format!("/dev/todos/{id}"), &json!({"completed": true}))
            .await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    assert_eq!(s.list("dev").await, vec![second]);
}

#[tokio::test]
async fn unknown_ids_are_404_json() {
    let s = Server::in_memory().await;
    for path in [
        "/dev/todos/nope",
        "/dev/todos/00000000-0000-4000-8000-000000000000",
    ] {
        let msg = assert_error(s.get(path).await, StatusCode::NOT_FOUND, "not_found").await;
        assert!(msg.contains("dev"), "message names the stage: {msg}");
        assert_error(s.delete(path).await, StatusCode::NOT_FOUND, "not_found").await;
        assert_error(
            s.patch_json(path, &json!({"title": "t"})).await,
            StatusCode::NOT_FOUND,
            "not_found",
        )
        .await;
    }
}

#[tokio::test]
async fn list_keeps_creation_order() {
    let s = Server::in_memory().await;
    let mut ids = Vec::new();
    for i in 0..25 {
        let t = s.create("dev", &format!("todo {i}")).await;
        ids.push(t["id"].as_str().unwrap().to_owned());
    }
    // Updating must not reorder.
    s.patch_json(
        &format!("/dev/todos/{}", ids[0]),
        &json!({"title": "first, renamed"}),
    )
    .await;
    let listed: Vec<String> = s
        .list("dev")
        .await
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(listed, ids);
}

#[tokio::test]
async fn stages_are_isolated() {
    let s = Server::in_memory().await;
    let dev = s.create("dev", "dev todo").await;
    let dev_id = dev["id"].as_str().unwrap();
    let prod = s.create("prod", "prod todo").await;

    assert_eq!(s.list("dev").await, vec![dev.clone()]);
    assert_eq!(s.list("prod").await, vec![prod.clone()]);
    assert!(s.list("pr-42").await.is_empty());

    // A dev id does not exist in prod, for every single-todo method.
    let in_prod = format!("/prod/todos/{dev_id}");
    assert_error(s.get(&in_prod).await, StatusCode::NOT_FOUND, "not_found").await;
    assert_error(
        s.patch_json(&in_prod, &json!({"completed": true})).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    assert_error(s.delete(&in_prod).await, StatusCode::NOT_FOUND, "not_found").await;

    // Bulk operations in prod leave dev alone.
    let all = json_of(
        s.patch_json("/prod/todos", &json!({"completed": true}))
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(all, json!({"updated": 1}));
    let cleared = json_of(s.delete("/prod/todos?completed=true").await, StatusCode::OK).await;
    assert_eq!(cleared, json!({"deleted": 1}));
    assert_eq!(
        s.list("dev").await,
        vec![dev],
        "dev untouched by prod bulk ops"
    );
    assert!(s.list("prod").await.is_empty());
}

#[tokio::test]
async fn invalid_stages_are_404_invalid_stage() {
    let s = Server::in_memory().await;
    let long = "a".repeat(64);
    for stage in [
        "Dev",
        "-dev",
        "dev_1",
        "dev.1",
        "d%C3%A9v",
        "dev%20x",
        long.as_str(),
    ] {
        let msg = assert_error(
            s.get(&format!("/{stage}/todos")).await,
            StatusCode::NOT_FOUND,
            "invalid_stage",
        )
        .await;
        assert!(
            msg.contains("lowercase"),
            "message explains the rule: {msg}"
        );
        assert_error(
            s.get(&format!("/{stage}/todos/some-id")).await,
            StatusCode::NOT_FOUND,
            "invalid_stage",
        )
        .await;
        // Stage is checked before the body: a bad stage is a 404 even with a bad body.
        assert_error(
            s.send_raw(
                Method::POST,
                &format!("/{stage}/todos"),
                Some("application/json"),
                "{oops",
            )
            .await,
            StatusCode::NOT_FOUND,
            "invalid_stage",
        )
        .await;
    }
    // The longest valid stage works.
    let ok = "a".repeat(63);
    assert!(s.list(&ok).await.is_empty());
}

#[tokio::test]
async fn title_rules() {
    let s = Server::in_memory().await;

    // Blank, or nothing visible: zero-width spaces and joiners, direction overrides,
    // controls, the byte order mark.
    for blank in [
        "",
        "   ",
        "\n\t ",
        "\u{200B}",
        "\u{200B}\u{200D}\u{FEFF}",
        "\u{202E}\u{2066}",
        "\u{7}\u{1B}",
    ] {
        assert_error(
            s.post_json("/dev/todos", &json!({"title": blank})).await,
            StatusCode::BAD_REQUEST,
            "invalid_title",
        )
        .await;
    }

    // 500 characters is accepted, 501 is not; counted in chars, not bytes.
    let ok = "a".repeat(500);
    let t = s.create("dev", &ok).await;
    assert_eq!(t["title"], ok.as_str());
    let msg = assert_error(
        s.post_json("/dev/todos", &json!({"title": "a".repeat(501)}))
            .await,
        StatusCode::BAD_REQUEST,
        "invalid_title",
    )
    .await;
    assert!(msg.contains("500"), "message states the limit: {msg}");

    let wide_ok = "🚀".repeat(500); // 2000 bytes, 500 chars
    assert_eq!(s.create("dev", &wide_ok).await["title"], wide_ok.as_str());
    assert_error(
        s.post_json("/dev/todos", &json!({"title": "é".repeat(501)}))
            .await,
        StatusCode::BAD_REQUEST,
        "invalid_title",
    )
    .await;

    // Whitespace around the title does not count.
    let padded = format!("  {}  ", "b".repeat(500));
    assert_eq!(s.create("dev", &padded).await["title"], "b".repeat(500));

    // PATCH applies the same rules and leaves the todo unchanged on error.
    let id = t["id"].as_str().unwrap();
    let path = format!("/dev/todos/{id}");
    assert_error(
        s.patch_json(&path, &json!({"title": "x".repeat(501)}))
            .await,
        StatusCode::BAD_REQUEST,
        "invalid_title",
    )
    .await;
    assert_error(
        s.patch_json(&path, &json!({"title": "  ", "completed": true}))
            .await,
        StatusCode::BAD_REQUEST,
        "invalid_title",
    )
    .await;
    let unchanged = json_of(s.get(&path).await, StatusCode::OK).await;
    assert_eq!(unchanged, t);

    assert_eq!(
        s.list("dev").await.len(),
        3,
        "rejected titles created nothing"
    );
}

#[tokio::test]
async fn unicode_and_html_titles_round_trip_verbatim() {
    let s = Server::in_memory().await;
    let title = r#"<script>alert("x")</script> <b>bold</b> &amp; Ünïcödé 日本語 🚀👩‍👩‍👧 "quotes" \ back\slash"#;
    let created = s.create("dev", title).await;
    assert_eq!(created["title"], title);
    let id = created["id"].as_str().unwrap();
    let got = json_of(s.get(&format!("/dev/todos/{id}")).await, StatusCode::OK).await;
    assert_eq!(got["title"], title);
    assert_eq!(s.list("dev").await[0]["title"], title);

    let renamed = "עברית &lt;i&gt; <img src=x onerror=alert(1)>";
    let patched = json_of(
        s.patch_json(&format!("/dev/todos/{id}"), &json!({"title": renamed}))
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(patched["title"], renamed);
}

#[tokio::test]
async fn bad_bodies_are_400_json_never_500() {
    let s = Server::in_memory().await;
    let id = s.create("dev", "target").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let one = format!("/dev/todos/{id}");
    let json_ct = Some("application/json");

    // Malformed JSON.
    for body in [
        "{\"title\": ",
        "{oops}",
        "",
        "not json",
        "{\"title\": \"a\",}",
    ] {
        assert_error(
            s.send_raw(Method::POST, "/dev/todos", json_ct, body).await,
            StatusCode::BAD_REQUEST,
            "malformed_json",
        )
        .await;
        assert_error(
            s.send_raw(Method::PATCH, &one, json_ct, body).await,
            StatusCode::BAD_REQUEST,
            "malformed_json",
        )
        .await;
        assert_error(
            s.send_raw(Method::PATCH, "/dev/todos", json_ct, body).await,
            StatusCode::BAD_REQUEST,
            "malformed_json",
        )
        .await;
    }

    // Wrong or missing content type.
    for ct in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        None,
    ] {
        assert_error(
            s.send_raw(Method::POST, "/dev/todos", ct, r#"{"title": "a"}"#)
                .await,
            StatusCode::BAD_REQUEST,
            "invalid_content_type",
        )
        .await;
        assert_error(
            s.send_raw(Method::PATCH, &one, ct, r#"{"completed": true}"#)
                .await,
            StatusCode::BAD_REQUEST,
            "invalid_content_type",
        )
        .await;
    }

    // Valid JSON, wrong shape: wrong types, missing or unknown fields, nulls.
    let create_bodies = [
        json!({}),
        json!({"title": 5}),
        json!({"title": null}),
        json!({"title": ["a"]}),
        json!({"title": "a", "completed": "yes"}),
        json!({"title": "a", "completed": null}),
        json!({"title": "a", "id": "mine"}),
        json!([]),
        json!("a title"),
    ];
    for body in &create_bodies {
        assert_error(
            s.post_json("/dev/todos", body).await,
            StatusCode::BAD_REQUEST,
            "invalid_body",
        )
        .await;
    }
    let patch_bodies = [
        json!({}),
        json!({"title": null}),
        json!({"completed": "true"}),
        json!({"completed": 1}),
        json!({"complete": true}),
        json!({"title": "a", "extra": 1}),
        json!(null),
    ];
    for body in &patch_bodies {
        assert_error(
            s.patch_json(&one, body).await,
            StatusCode::BAD_REQUEST,
            "invalid_body",
        )
        .await;
    }
    let bulk_bodies = [
        json!({}),
        json!({"completed": "yes"}),
        json!({"completed": true, "title": "x"}),
    ];
    for body in &bulk_bodies {
        assert_error(
            s.patch_json("/dev/todos", body).await,
            StatusCode::BAD_REQUEST,
            "invalid_body",
        )
        .await;
    }

    // None of that changed anything.
    let list = s.list("dev").await;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["title"], "target");
    assert_eq!(list[0]["completed"], false);
}

#[tokio::test]
async fn oversized_body_is_413_json() {
    let s = Server::in_memory().await;
    let huge = format!(r#"{{"title": "{}"}}"#, "a".repeat(200 * 1024));
    assert_error(
        s.send_raw(Method::POST, "/dev/todos", Some("application/json"), huge)
            .await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
    )
    .await;
}

#[tokio::test]
async fn toggle_all_answers_how_many_todos_it_changed() {
    let s = Server::in_memory().await;
    // Empty stage: still 200, nothing updated.
    let empty = json_of(
        s.patch_json("/dev/todos", &json!({"completed": true}))
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(empty, json!({"updated": 0}));

    let a = s.create("dev", "a").await;
    let b = s.create("dev", "b").await;
    s.patch_json(
        &format!("/dev/todos/{}", b["id"].as_str().unwrap()),
        &json!({"completed": true}),
    )
    .await;
    let c = s.create("dev", "c").await;

    // Only the todos not yet in the wanted state count.
    for (completed, updated) in [(true, 2), (true, 0), (false, 3), (true, 3)] {
        let answer = json_of(
            s.patch_json("/dev/todos", &json!({"completed": completed}))
                .await,
            StatusCode::OK,
        )
        .await;
        assert_eq!(answer, json!({"updated": updated}), "completed={completed}");
        let list = s.list("dev").await;
        let ids: Vec<&Value> = list.iter().map(|t| &t["id"]).collect();
        assert_eq!(ids, [&a["id"], &b["id"], &c["id"]], "order unchanged");
        for t in &list {
            assert_todo_shape(t);
            assert_eq!(t["completed"], completed);
        }
    }
}

#[tokio::test]
async fn clear_completed() {
    let s = Server::in_memory().await;
    let a = s.create("dev", "a").await;
    let b = s.create("dev", "b").await;
    let c = s.create("dev", "c").await;
    for t in [&a, &c] {
        s.patch_json(
            &format!("/dev/todos/{}", t["id"].as_str().unwrap()),
            &json!({"completed": true}),
        )
        .await;
    }

    let res = json_of(s.delete("/dev/todos?completed=true").await, StatusCode::OK).await;
    assert_eq!(res, json!({"deleted": 2}));
    assert_eq!(s.list("dev").await, vec![b]);

    let res = json_of(s.delete("/dev/todos?completed=true").await, StatusCode::OK).await;
    assert_eq!(res, json!({"deleted": 0}));
}

#[tokio::test]
async fn delete_collection_without_completed_true_is_refused() {
    let s = Server::in_memory().await;
    s.create("dev", "keep me").await;
    let done = s
        .post_json("/dev/todos", &json!({"title": "done", "completed": true}))
        .await;
    assert_eq!(done.status(), StatusCode::CREATED);

    for path in [
        "/dev/todos",
        "/dev/todos?",
        "/dev/todos?completed=false",
        "/dev/todos?completed=1",
        "/dev/todos?completed=TRUE",
        "/dev/todos?completed",
        "/dev/todos?all=true",
        "/dev/todos?completed=true&completed=false",
    ] {
        let msg = assert_error(
            s.delete(path).await,
            StatusCode::BAD_REQUEST,
            "invalid_query",
        )
        .await;
        assert!(
            msg.contains("completed=true"),
            "message names the fix: {msg}"
        );
    }
    assert_eq!(s.list("dev").await.len(), 2, "nothing was deleted");
}

#[tokio::test]
async fn unknown_routes_and_methods_are_json() {
    let s = Server::in_memory().await;
    for path in [
        "/",
        "/dev",
        "/dev/",
        "/dev/nope",
        "/dev/todos/",
        "/dev/todos/a/b",
    ] {
        assert_error(s.get(path).await, StatusCode::NOT_FOUND, "not_found").await;
    }

    for (method, path) in [
        (Method::PUT, "/dev/todos"),
        (Method::PUT, "/dev/todos/abc"),
        (Method::POST, "/dev/todos/abc"),
        (Method::POST, "/healthz"),
        (Method::DELETE, "/healthz"),
    ] {
        let res = s
            .client
            .request(method.clone(), s.url(path))
            .send()
            .await
            .unwrap();
        let allow = res
            .headers()
            .get("allow")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        assert!(!allow.is_empty(), "{method} {path}: Allow header present");
        assert!(
            !allow.contains(method.as_str()),
            "{method} {path}: Allow {allow}"
        );
        assert_error(res, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed").await;
    }
}

#[tokio::test]
async fn cors_preflight_and_headers() {
    let s = Server::in_memory().await;
    let origin = "http://127.0.0.1:8080";

    for (path, method) in [
        ("/dev/todos", "POST"),
        ("/dev/todos/abc", "PATCH"),
        ("/dev/todos", "DELETE"),
    ] {
        let res = s
            .client
            .request(Method::OPTIONS, s.url(path))
            .header("origin", origin)
            .header("access-control-request-method", method)
            .header("access-control-request-headers", "content-type")
            .send()
            .await
            .unwrap();
        assert!(
            res.status().is_success(),
            "preflight {path}: {}",
            res.status()
        );
        let h = res.headers();
        let get = |name: &str| {
            h.get(name)
                .map(|v| v.to_str().unwrap().to_ascii_lowercase())
                .unwrap_or_default()
        };
        assert_eq!(get("access-control-allow-origin"), "*");
        let methods = get("access-control-allow-methods");
        for m in ["get", "post", "patch", "delete", "options"] {
            assert!(methods.contains(m), "allow-methods {methods:?} lacks {m}");
        }
        assert!(get("access-control-allow-headers").contains("content-type"));
    }

    // Actual responses, successes and errors alike, carry the CORS header so the
    // browser lets the app read error bodies.
    for (method, path) in [
        (Method::GET, "/dev/todos"),
        (Method::GET, "/dev/todos/missing"),
        (Method::GET, "/NOPE/todos"),
        (Method::DELETE, "/dev/todos"),
        (Method::GET, "/healthz"),
        (Method::GET, "/no/such/route"),
    ] {
        let res = s
            .client
            .request(method.clone(), s.url(path))
            .header("origin", origin)
            .send()
            .await
            .unwrap();
        assert_eq!(
            res.headers()
                .get("access-control-allow-origin")
                .and_then(|v| v.to_str().ok()),
            Some("*"),
            "{method} {path} ({})",
            res.status()
        );
    }
}

#[tokio::test]
async fn data_persists_across_restart_with_the_same_file() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("todos.sqlite3");

    let s = Server::start(Store::open(&db).unwrap()).await;
    let a = s.create("dev", "survives").await;
    let b = s.create("dev", "<i>also</i> survives ✓").await;
    let p = s.create("prod", "prod one").await;
    let b = json_of(
        s.patch_json(
            &format!("/dev/todos/{}", b["id"].as_str().unwrap()),
            &json!({"completed": true}),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    s.stop().await;

    let s = Server::start(Store::open(&db).unwrap()).await;
    assert_eq!(s.list("dev").await, vec![a, b]);
    assert_eq!(s.list("prod").await, vec![p]);
    // And the restarted server keeps working on the same file.
    let c = s.create("dev", "after restart").await;
    assert_eq!(s.list("dev").await.last(), Some(&c));
    s.stop().await;
}

#[tokio::test]
async fn sqlite_fault_is_500_internal_json() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("todos.sqlite3");
    let s = Server::start(Store::open(&db).unwrap()).await;
    s.create("dev", "x").await;

    // Break the database behind the server's back.
    let other = rusqlite::Connection::open(&db).unwrap();
    other.execute_batch("DROP TABLE todos;").unwrap();
    drop(other);

    let msg = assert_error(
        s.get("/dev/todos").await,
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
    )
    .await;
    assert!(
        !msg.to_lowercase().contains("sqlite"),
        "no internals leak: {msg}"
    );
    assert_error(
        s.post_json("/dev/todos", &json!({"title": "y"})).await,
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
    )
    .await;
    // Bad input is still a 400, not a 500, even while storage is broken.
    assert_error(
        s.post_json("/dev/todos", &json!({"title": " "})).await,
        StatusCode::BAD_REQUEST,
        "invalid_title",
    )
    .await;
}

/// Creates `n` todos in `stage`, 16 requests at a time, and returns them in list
/// order (`createdAt`, then `id`), which is what the contract defines.
async fn create_many(s: &Server, stage: &str, n: usize) -> Vec<Value> {
    let mut todos = Vec::with_capacity(n);
    let titles: Vec<String> = (0..n).map(|i| format!("todo {i}")).collect();
    for chunk in titles.chunks(16) {
        let created =
            futures_util::future::join_all(chunk.iter().map(|t| s.create(stage, t))).await;
        todos.extend(created);
    }
    todos.sort_by(|x, y| {
        (x["createdAt"].as_str(), x["id"].as_str())
            .cmp(&(y["createdAt"].as_str(), y["id"].as_str()))
    });
    todos
}

fn ids(todos: &[Value]) -> Vec<String> {
    todos
        .iter()
        .map(|t| t["id"].as_str().expect("id").to_owned())
        .collect()
}

/// The `limit` of a Link target.
fn limit_of(url: &str) -> String {
    let url = reqwest::Url::parse(url).expect("absolute URL");
    let limits: Vec<String> = url
        .query_pairs()
        .filter(|(k, _)| k == "limit")
        .map(|(_, v)| v.into_owned())
        .collect();
    assert_eq!(limits.len(), 1, "one limit in {url}");
    limits[0].clone()
}

#[tokio::test]
async fn list_pages_follow_link_through_every_todo_once_in_order() {
    let s = Server::in_memory().await;
    let all = create_many(&s, "dev", 250).await;
    s.create("prod", "not in dev").await;

    // No limit: the first 100, and a Link to the rest with the same limit.
    let (first, next) = s.page(&s.url("/dev/todos")).await;
    assert_eq!(ids(&first), ids(&all[..100]), "the oldest 100 first");
    let next = next.expect("a Link rel=next after the first of three pages");
    assert_eq!(limit_of(&next), "100");
    assert!(next.starts_with(&s.url("/dev/todos?")), "same path: {next}");

    // Following Link pages through everything, each todo once, in order, and the
    // last page has no Link. 250 = 5 × 50 checks that a full last page has none.
    for (limit, pages) in [(None, 3), (Some(7), 36), (Some(50), 5), (Some(1000), 1)] {
        let mut url = s.url("/dev/todos");
        if let Some(limit) = limit {
            url.push_str(&format!("?limit={limit}"));
        }
        let mut seen = Vec::new();
        let mut count = 0;
        loop {
            let (page, next) = s.page(&url).await;
            count += 1;
            let wanted = limit.unwrap_or(100);
            assert!(
                page.len() <= wanted,
                "limit {wanted}: page of {}",
                page.len()
            );
            assert!(!page.is_empty(), "no empty page is ever linked");
            seen.extend(page);
            match next {
                Some(n) => {
                    assert_eq!(limit_of(&n), wanted.to_string());
                    url = n;
                }
                None => break,
            }
        }
        assert_eq!(count, pages, "limit {limit:?}");
        assert_eq!(seen, all, "limit {limit:?}: every todo once, oldest first");
    }

    // An exact limit equal to the list has no Link; an empty stage is one empty page.
    let (page, next) = s.page(&s.url("/dev/todos?limit=250")).await;
    assert_eq!((page.len(), next), (250, None));
    let (page, next) = s.page(&s.url("/empty/todos")).await;
    assert_eq!((page.len(), next), (0, None));
}

#[tokio::test]
async fn bad_limit_or_cursor_is_400_invalid_query() {
    let s = Server::in_memory().await;
    create_many(&s, "dev", 3).await;
    let (_, next) = s.page(&s.url("/dev/todos?limit=1")).await;
    let good = next.expect("a next page");
    let cursor = reqwest::Url::parse(&good)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "cursor")
        .map(|(_, v)| v.into_owned())
        .expect("a cursor in the Link");

    for (query, names) in [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=-1", "limit"),
        ("limit=ten", "limit"),
        ("limit=", "limit"),
        ("limit=1.5", "limit"),
        ("limit=99999999999999999999", "limit"),
        ("cursor=", "cursor"),
        ("cursor=garbage!", "cursor"),
        ("cursor=Z2FyYmFnZQ", "cursor"), // base64url of "garbage"
        (&format!("cursor={}x", &cursor), "cursor"),
        (&format!("cursor={}", &cursor[1..]), "cursor"),
        ("limit=2&limit=3", "limit"),
        (&format!("cursor={cursor}&cursor={cursor}"), "cursor"),
    ] {
        let msg = assert_error(
            s.get(&format!("/dev/todos?{query}")).await,
            StatusCode::BAD_REQUEST,
            "invalid_query",
        )
        .await;
        assert!(msg.contains(names), "{query}: message names {names}: {msg}");
        assert!(
            msg.contains("1000") || msg.contains("Link"),
            "{query}: message names the fix: {msg}"
        );
    }
    // Unknown parameters are ignored, and the cursor works with a new limit.
    let (page, _) = s
        .page(&s.url(&format!("/dev/todos?cursor={cursor}&limit=5&x=1")))
        .await;
    assert_eq!(page.len(), 2);
}

/// The cursor is a position: deleting the todo it came from, or any other, and
/// creating todos between pages never repeats or skips a todo that existed
/// throughout.
#[tokio::test]
async fn paging_while_todos_are_deleted_and_created_neither_repeats_nor_skips() {
    let s = Server::in_memory().await;
    let all = create_many(&s, "dev", 40).await;
    let all_ids = ids(&all);
    let mut deleted = std::collections::HashSet::new();
    let mut created = Vec::new();

    let mut url = s.url("/dev/todos?limit=6");
    let mut seen: Vec<String> = Vec::new();
    loop {
        let (page, next) = s.page(&url).await;
        let page = ids(&page);
        seen.extend(page.iter().cloned());
        let Some(next) = next else { break };
        // The todo the cursor points after, one just returned before it, and one
        // not yet returned: all gone before the next page is asked for.
        let last = page.last().expect("a linked page is not empty");
        let ahead = all_ids
            .iter()
            .rev()
            .find(|id| !deleted.contains(*id) && !seen.contains(id));
        for id in [Some(last), page.first(), ahead].into_iter().flatten() {
            if deleted.insert(id.clone()) {
                let res = s.delete(&format!("/dev/todos/{id}")).await;
                assert_eq!(res.status(), StatusCode::NO_CONTENT);
            }
        }
        created.push(
            s.create("dev", "made between pages").await["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
        url = next;
    }

    let mut unique = seen.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), seen.len(), "no todo twice: {seen:?}");
    // In list order: the ids (UUID v7, time-ordered) increase.
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "in order: {seen:?}");
    for id in all_ids.iter().filter(|id| !deleted.contains(*id)) {
        assert!(seen.contains(id), "{id} existed throughout but was skipped");
    }
    // Todos created while paging come after the cursor, so they appear too.
    for id in &created {
        assert!(seen.contains(id), "created {id} not seen");
    }
    assert!(deleted.len() > 10, "the test deleted as it paged");
}

#[tokio::test]
async fn cors_exposes_the_link_header() {
    let s = Server::in_memory().await;
    let res = s
        .client
        .get(s.url("/dev/todos"))
        .header("origin", "http://127.0.0.1:8080")
        .send()
        .await
        .unwrap();
    let exposed = res
        .headers()
        .get("access-control-expose-headers")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    assert!(
        exposed.split(',').any(|h| h.trim() == "link"),
        "the app must be able to read Link: {exposed:?}"
    );
}
