//! The TodoMVC app-spec, the runtime config and the network behaviour, checked in
//! headless chromium on a stage deployed by the uploader and served from moto.

use anyhow::{Result, ensure};
use e2e::Site;

const LABELS: &str = ".todo-list li label";

async fn site() -> Result<Site> {
    let site = Site::open("dev", false).await?;
    site.browser.wait_for("input.new-todo").await?;
    site.browser
        .wait_js("!document.querySelector('.loading')")
        .await?;
    Ok(site)
}

#[tokio::test(flavor = "multi_thread")]
async fn empty_list_hides_main_and_footer_and_focuses_new_todo() -> Result<()> {
    let s = site().await?;
    let b = &s.browser;
    ensure!(
        !b.visible("section.main").await?,
        "main shown with no todos"
    );
    ensure!(
        !b.visible("footer.footer").await?,
        "footer shown with no todos"
    );
    b.wait_js("document.activeElement && document.activeElement.classList.contains('new-todo')")
        .await?;
    s.add("one").await?;
    ensure!(
        b.visible("section.main").await? && b.visible("footer.footer").await?,
        "main/footer hidden with a todo"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn enter_adds_trimmed_titles_ignores_empty_and_clears_input() -> Result<()> {
    let s = site().await?;
    let b = &s.browser;
    s.add("   Buy milk   ").await?;
    b.wait_texts(LABELS, &["Buy milk"]).await?;
    ensure!(
        b.js("return document.querySelector('.new-todo').value")
            .await?
            == "",
        "input not cleared"
    );
    b.type_into("input.new-todo", "    \u{e007}").await?;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    b.wait_texts(LABELS, &["Buy milk"]).await?;
    s.wait_api_count("dev", 1).await?;
    ensure!(
        s.stack.todos("dev").await?[0]["title"] == "Buy milk",
        "API has the untrimmed title"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn counter_toggle_and_toggle_all_follow_the_spec() -> Result<()> {
    let s = site().await?;
    let b = &s.browser;
    let count = || b.js("return document.querySelector('.todo-count').textContent.trim()");
    s.add("a").await?;
    ensure!(count().await? == "1 item left", "{}", count().await?);
    s.add("b").await?;
    ensure!(count().await? == "2 items left", "{}", count().await?);
    ensure!(
        b.js("return document.querySelector('.todo-count strong').textContent")
            .await?
            == "2",
        "number not in <strong>"
    );

    // Per-item toggle sets the completed class; toggle-all is unchecked until all are done.
    b.wait_for(".todo-list li:nth-child(1) .toggle")
        .await?
        .click()
        .await?;
    b.wait_js(
        "document.querySelector('.todo-list li:nth-child(1)').classList.contains('completed')",
    )
    .await?;
    ensure!(count().await? == "1 item left", "{}", count().await?);
    ensure!(
        b.js("return document.querySelector('#toggle-all').checked")
            .await?
            == false,
        "toggle-all checked with one active"
    );
    b.wait_for(".todo-list li:nth-child(2) .toggle")
        .await?
        .click()
        .await?;
    b.wait_js("document.querySelector('#toggle-all').checked")
        .await?;
    ensure!(count().await? == "0 items left", "{}", count().await?);

    // Clicking toggle-all when all are complete makes all active, then all complete.
    b.wait_for("label[for=toggle-all]").await?.click().await?;
    b.wait_js("document.querySelectorAll('.todo-list li.completed').length === 0")
        .await?;
    ensure!(
        b.js("return document.querySelector('#toggle-all').checked")
            .await?
            == false,
        "still checked"
    );
    b.wait_for("label[for=toggle-all]").await?.click().await?;
    b.wait_js("document.querySelectorAll('.todo-list li.completed').length === 2")
        .await?;
    // And the API agrees.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while s
        .stack
        .todos("dev")
        .await?
        .iter()
        .any(|t| t["completed"] != true)
    {
        ensure!(
            std::time::Instant::now() < deadline,
            "API not all completed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn destroy_and_clear_completed_remove_todos() -> Result<()> {
    let s = site().await?;
    let b = &s.browser;
    for t in ["a", "b", "c"] {
        s.add(t).await?;
    }
    s.wait_api_count("dev", 3).await?;
    ensure!(
        !b.visible("button.clear-completed").await?,
        "clear-completed shown with none completed"
    );
    b.hover(".todo-list li:nth-child(2)").await?;
    b.wait_for(".todo-list li:nth-child(2) .destroy")
        .await?
        .click()
        .await?;
    b.wait_texts(LABELS, &["a", "c"]).await?;
    b.wait_for(".todo-list li:nth-child(1) .toggle")
        .await?
        .click()
        .await?;
    b.wait_js("getComputedStyle(document.querySelector('.clear-completed')).display !== 'none'")
        .await?;
    b.wait_for("button.clear-completed").await?.click().await?;
    b.wait_texts(LABELS, &["c"]).await?;
    ensure!(
        !b.visible("button.clear-completed").await?,
        "clear-completed still shown"
    );
    s.wait_api_count("dev", 1).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn double_click_edits_enter_and_blur_save_escape_cancels_empty_deletes() -> Result<()> {
    let s = site().await?;
    let b = &s.browser;
    for t in ["first", "second", "third"] {
        s.add(t).await?;
    }
    s.wait_api_count("dev", 3).await?;

    b.double_click(".todo-list li:nth-child(1) label").await?;
    b.wait_js("document.querySelector('.todo-list li:nth-child(1)').classList.contains('editing')")
        .await?;
    b.wait_js(
        "document.activeElement === document.querySelector('.todo-list li:nth-child(1) .edit')",
    )
    .await?;
    ensure!(
        b.js("return document.activeElement.value").await? == "first",
        "edit field lacks the title"
    );
    b.js("document.activeElement.select()").await?;
    b.client
        .active_element()
        .await?
        .send_keys("  renamed  \u{e007}")
        .await?;
    b.wait_texts(LABELS, &["renamed", "second", "third"])
        .await?;
    ensure!(
        !b.visible(".todo-list li.editing").await?,
        "still editing after Enter"
    );

    // Escape cancels, and the blur that follows does not save.
    b.double_click(".todo-list li:nth-child(2) label").await?;
    b.wait_js("document.activeElement.classList.contains('edit')")
        .await?;
    b.client
        .active_element()
        .await?
        .send_keys("zzz\u{e00c}")
        .await?;
    b.wait_js("!document.querySelector('.todo-list li.editing')")
        .await?;
    b.wait_for("input.new-todo").await?.click().await?;
    b.wait_texts(LABELS, &["renamed", "second", "third"])
        .await?;

    // Blur saves.
    b.double_click(".todo-list li:nth-child(3) label").await?;
    b.wait_js("document.activeElement.classList.contains('edit')")
        .await?;
    b.client.active_element().await?.send_keys(" more").await?;
    b.wait_for("input.new-todo").await?.click().await?;
    b.wait_texts(LABELS, &["renamed", "second", "third more"])
        .await?;

    // Emptying the title deletes the todo.
    b.double_click(".todo-list li:nth-child(2) label").await?;
    b.wait_js("document.activeElement.classList.contains('edit')")
        .await?;
    b.js("document.activeElement.select()").await?;
    b.client
        .active_element()
        .await?
        .send_keys("\u{e003}\u{e007}")
        .await?;
    b.wait_texts(LABELS, &["renamed", "third more"]).await?;

    s.wait_api_count("dev", 2).await?;
    let titles: Vec<_> = s
        .stack
        .todos("dev")
        .await?
        .iter()
        .map(|t| t["title"].as_str().unwrap_or("").to_owned())
        .collect();
    ensure!(titles == ["renamed", "third more"], "API has {titles:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn filters_select_their_link_and_survive_reload_and_back() -> Result<()> {
    let s = site().await?;
    let b = &s.browser;
    for t in ["active one", "done one"] {
        s.add(t).await?;
    }
    b.wait_for(".todo-list li:nth-child(2) .toggle")
        .await?
        .click()
        .await?;
    s.wait_api_count("dev", 2).await?;
    let selected =
        || b.js("return document.querySelector('.filters a.selected').getAttribute('href')");

    ensure!(selected().await? == "#/", "{}", selected().await?);
    b.wait_for(".filters a[href='#/active']")
        .await?
        .click()
        .await?;
    b.wait_texts(LABELS, &["active one"]).await?;
    ensure!(selected().await? == "#/active", "{}", selected().await?);
    b.wait_for(".filters a[href='#/completed']")
        .await?
        .click()
        .await?;
    b.wait_texts(LABELS, &["done one"]).await?;
    ensure!(selected().await? == "#/completed", "{}", selected().await?);

    b.client.refresh().await?;
    b.wait_texts(LABELS, &["done one"]).await?;
    ensure!(
        selected().await? == "#/completed",
        "filter lost on reload: {}",
        selected().await?
    );

    b.client.back().await?;
    b.wait_texts(LABELS, &["active one"]).await?;
    ensure!(
        selected().await? == "#/active",
        "back did not restore the filter: {}",
        selected().await?
    );
    b.client.back().await?;
    b.wait_texts(LABELS, &["active one", "done one"]).await?;
    ensure!(selected().await? == "#/", "{}", selected().await?);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn titles_are_text_and_any_unicode_round_trips() -> Result<()> {
    let s = site().await?;
    let b = &s.browser;
    let html = "<img src=x onerror=\"document.title='pwned'\"><b>bold</b>";
    let unicode = "Ünïcødé ✓ 日本語 🎉 עברית";
    s.add(html).await?;
    s.add(unicode).await?;
    b.wait_texts(LABELS, &[html, unicode]).await?;
    ensure!(
        b.js("return document.querySelectorAll('.todo-list b, .todo-list img').length")
            .await?
            == 0,
        "a title was rendered as HTML"
    );
    b.client.refresh().await?;
    b.wait_texts(LABELS, &[html, unicode]).await?;
    ensure!(
        b.js("return document.title").await? != "pwned",
        "script ran"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn dev_shows_a_stage_badge_and_prod_does_not() -> Result<()> {
    let s = site().await?;
    let badge = s.browser.wait_for("#stage-badge").await?;
    ensure!(
        badge.text().await? == "dev",
        "badge says {}",
        badge.text().await?
    );

    s.stack
        .run_uploader(&["promote", "--from", "dev", "--to", "prod"])?;
    let prod = s.stack.preview("prod")?;
    s.browser.client.goto(&format!("{}/", prod.url)).await?;
    s.browser.wait_for("input.new-todo").await?;
    ensure!(
        !s.browser.visible("#stage-badge").await?,
        "prod shows a stage badge"
    );
    // Same bundle, prod's own data.
    s.add("prod todo").await?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while s.stack.todos("prod").await?.len() != 1 {
        ensure!(std::time::Instant::now() < deadline, "prod API has no todo");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    ensure!(
        s.stack.todos("dev").await?.is_empty(),
        "prod's todo landed on dev"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_config_json_shows_a_message_not_a_blank_page() -> Result<()> {
    let s = Site::open("dev", false).await?;
    s.browser.wait_for("input.new-todo").await?;
    s.stack
        .s3
        .delete_object()
        .bucket(&s.stack.bucket)
        .key("dev/config.json")
        .send()
        .await?;
    s.browser.client.refresh().await?;
    let msg = s.browser.wait_for("#config-error").await?.text().await?;
    ensure!(
        msg.contains("config.json"),
        "message does not name config.json: {msg}"
    );
    ensure!(
        !s.browser.visible("input.new-todo").await?,
        "app shown without config"
    );

    // Invalid JSON: also a message.
    s.stack
        .s3
        .put_object()
        .bucket(&s.stack.bucket)
        .key("dev/config.json")
        .content_type("application/json")
        .body(b"{ not json".to_vec().into())
        .send()
        .await?;
    s.browser.client.refresh().await?;
    s.browser.wait_for("#config-error").await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn api_down_rolls_back_the_change_and_shows_a_dismissible_error() -> Result<()> {
    let mut s = Site::open("dev", false).await?;
    s.browser.wait_for("input.new-todo").await?;
    s.add("keep me").await?;
    s.wait_api_count("dev", 1).await?;

    s.stack.api.stop();
    let b = &s.browser;
    b.wait_for(".todo-list li:nth-child(1) .toggle")
        .await?
        .click()
        .await?;
    b.wait_for(".error-banner").await?;
    b.wait_js("!document.querySelector('.todo-list li.completed')")
        .await?;
    ensure!(
        b.js("return document.querySelector('.todo-list li .toggle').checked")
            .await?
            == false,
        "toggle not rolled back"
    );

    // A create rolls back too.
    b.type_into("input.new-todo", "lost\u{e007}").await?;
    b.wait_texts(LABELS, &["keep me"]).await?;
    let msg = b.wait_for(".error-banner").await?.text().await?;
    ensure!(!msg.trim().is_empty(), "empty error message");
    b.wait_for(".error-banner button.dismiss")
        .await?
        .click()
        .await?;
    b.wait_js("!document.querySelector('.error-banner')")
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_api_shows_loading_and_a_second_enter_makes_no_duplicate() -> Result<()> {
    let s = Site::open("dev", true).await?;
    let proxy = s
        .stack
        .api_proxy
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("no proxy"))?;
    proxy.delay_reads(1500);
    s.browser.client.refresh().await?;
    s.browser.wait_for(".loading").await?;
    s.browser
        .wait_js("!document.querySelector('.loading')")
        .await?;
    proxy.delay_reads(0);

    proxy.delay_writes(1500);
    let b = &s.browser;
    // Enter twice in quick succession, as an impatient person does.
    b.type_into("input.new-todo", "only once\u{e007}\u{e007}")
        .await?;
    b.client
        .active_element()
        .await?
        .send_keys("\u{e007}")
        .await?;
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    s.wait_api_count("dev", 1).await?;
    b.wait_texts(LABELS, &["only once"]).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn unreachable_api_on_first_load_shows_an_error() -> Result<()> {
    let mut s = Site::open("dev", false).await?;
    s.browser.wait_for("input.new-todo").await?;
    s.stack.api.stop();
    s.browser.client.refresh().await?;
    s.browser.wait_for(".error-banner").await?;
    ensure!(
        !s.browser.visible(".loading").await?,
        "still loading after the failure"
    );
    Ok(())
}

/// More todos than one list page (the app asks for 1000 per page, the API's
/// largest): the app follows the API's `Link: rel="next"` and shows them all.
/// Seeded straight through the API, 16 requests at a time.
#[tokio::test(flavor = "multi_thread")]
async fn a_list_longer_than_one_page_is_shown_whole() -> Result<()> {
    const N: usize = 1001;
    let s = site().await?;
    let client = reqwest::Client::new();
    let url = format!("{}/dev/todos", s.stack.api.url);
    let indices: Vec<usize> = (0..N).collect();
    for chunk in indices.chunks(16) {
        let mut batch = tokio::task::JoinSet::new();
        for i in chunk {
            let request = client
                .post(&url)
                .json(&serde_json::json!({ "title": format!("seeded {i}") }));
            batch.spawn(async move { request.send().await });
        }
        while let Some(done) = batch.join_next().await {
            let status = done??.status();
            ensure!(status.as_u16() == 201, "seeding answered {status}");
        }
    }

    s.browser.client.refresh().await?;
    let b = &s.browser;
    b.wait_for("input.new-todo").await?;
    b.wait_js(&format!(
        "document.querySelectorAll('.todo-list li').length === {N}"
    ))
    .await?;
    let count = b
        .js("return document.querySelector('.todo-count').textContent.trim()")
        .await?;
    ensure!(count == format!("{N} items left").as_str(), "{count}");
    Ok(())
}
