//! The DynamoDB store under concurrent requests (moto): bulk operations keep
//! their meaning while other requests change the same list.

mod common;

use std::collections::HashSet;

use api::{Stage, Store, TableSource, Title};

async fn store() -> (Store, std::sync::Arc<testkit::Server>) {
    let moto = common::shared_moto();
    let client = common::dynamodb_client(&moto);
    let table = common::fresh_table(&client).await;
    (Store::dynamodb(client, TableSource::Fixed(table)), moto)
}

fn dev() -> Stage {
    Stage::parse("dev").expect("valid stage")
}

fn title(i: usize) -> Title {
    Title::parse(&format!("todo {i}")).expect("valid title")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn toggle_all_never_resurrects_todos_deleted_meanwhile() {
    let (store, _moto) = store().await;
    let stage = dev();
    let mut ids = Vec::new();
    for i in 0..60 {
        ids.push(
            store
                .create(&stage, title(i), false)
                .await
                .expect("create")
                .id,
        );
    }
    let (doomed, kept) = ids.split_at(30);

    let toggler = {
        let (store, stage) = (store.clone(), stage.clone());
        tokio::spawn(async move { store.set_all_completed(&stage, true).await })
    };
    let mut deleters = Vec::new();
    for id in doomed {
        let (store, stage, id) = (store.clone(), stage.clone(), id.clone());
        deleters.push(tokio::spawn(async move { store.delete(&stage, &id).await }));
    }
    let answered = toggler.await.expect("join").expect("toggle-all");
    for d in deleters {
        assert!(
            d.await.expect("join").expect("delete"),
            "each delete found its todo"
        );
    }

    // The answer counts what this request changed: every kept todo, and none
    // more than the 60 there were (a deleted one is skipped, never counted twice).
    assert!(
        (30..=60).contains(&answered),
        "updated {answered} of 30 kept + up to 30 deleted meanwhile"
    );

    // What is stored: exactly the kept todos, whole and completed; no deleted
    // todo came back as a partial item.
    let list = store.list(&stage).await.expect("list");
    let listed: Vec<&str> = list.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(listed, kept.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(
        list.iter()
            .all(|t| t.completed && t.title.starts_with("todo "))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_clear_completed_deletes_each_todo_once() {
    let (store, _moto) = store().await;
    let stage = dev();
    let mut open = HashSet::new();
    for i in 0..80 {
        let done = i % 2 == 0;
        let todo = store.create(&stage, title(i), done).await.expect("create");
        if !done {
            open.insert(todo.id);
        }
    }
    let mut clears = Vec::new();
    for _ in 0..4 {
        let (store, stage) = (store.clone(), stage.clone());
        clears.push(tokio::spawn(
            async move { store.delete_completed(&stage).await },
        ));
    }
    let mut total = 0;
    for c in clears {
        total += c.await.expect("join").expect("clear-completed");
    }
    assert_eq!(
        total, 40,
        "the counts add up to the todos that were completed"
    );
    let left: HashSet<String> = store
        .list(&stage)
        .await
        .expect("list")
        .into_iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(left, open, "only the open todos remain");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_creates_all_land_and_list_in_id_order() {
    let (store, _moto) = store().await;
    let stage = dev();
    let mut tasks = Vec::new();
    for i in 0..120 {
        let (store, stage) = (store.clone(), stage.clone());
        tasks.push(tokio::spawn(async move {
            store.create(&stage, title(i), false).await
        }));
    }
    let mut created = HashSet::new();
    for t in tasks {
        created.insert(t.await.expect("join").expect("create").id);
    }
    let list = store.list(&stage).await.expect("list");
    assert_eq!(list.len(), 120);
    let ids: Vec<&String> = list.iter().map(|t| &t.id).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "key order");
    assert!(
        list.windows(2).all(|w| w[0].created_at <= w[1].created_at),
        "creation order"
    );
    assert_eq!(
        list.into_iter().map(|t| t.id).collect::<HashSet<_>>(),
        created
    );
    // Toggle-all over more todos than one transaction (100) or batch (25) holds.
    let all = store
        .set_all_completed(&stage, true)
        .await
        .expect("toggle-all");
    assert_eq!(all, 120);
    assert!(
        store
            .list(&stage)
            .await
            .expect("list")
            .iter()
            .all(|t| t.completed)
    );
}

/// More than one Query page (DynamoDB, and moto, stop a page at 1 MB): 600
/// todos with 2,000-byte titles are ~1.2 MB. List, toggle-all and
/// clear-completed must follow `LastEvaluatedKey` to see every todo.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn list_and_bulk_operations_follow_every_query_page() {
    use futures_util::{StreamExt, TryStreamExt, stream};

    let (store, _moto) = store().await;
    let stage = dev();
    let big = "🚀".repeat(500); // 500 characters, 2,000 bytes
    let created: Vec<String> = stream::iter(0..600)
        .map(|_| {
            let (store, stage, big) = (store.clone(), stage.clone(), big.clone());
            async move {
                let title = Title::parse(&big).expect("valid title");
                store.create(&stage, title, false).await.map(|t| t.id)
            }
        })
        .buffered(16)
        .try_collect()
        .await
        .expect("create");

    let listed: Vec<String> = store
        .list(&stage)
        .await
        .expect("list")
        .into_iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(listed.len(), 600, "every page of the list is read");
    let mut sorted = created.clone();
    sorted.sort_unstable();
    assert_eq!(listed, sorted, "in key (creation) order");

    let all = store
        .set_all_completed(&stage, true)
        .await
        .expect("toggle-all");
    assert_eq!(all, 600);
    assert!(
        store
            .list(&stage)
            .await
            .expect("list")
            .iter()
            .all(|t| t.completed)
    );
    assert_eq!(store.delete_completed(&stage).await.expect("clear"), 600);
    assert!(store.list(&stage).await.expect("list").is_empty());
}
