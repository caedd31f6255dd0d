//! DynamoDB persistence: what the Lambda function behind API Gateway uses.
//!
//! # Table design
//!
//! One table per API Gateway stage (the stage variable `tableName` names it), so
//! dev and prod data live apart and IAM can grant each alias only its table.
//!
//! | attribute   | type | role                                                        |
//! |-------------|------|-------------------------------------------------------------|
//! | `pk`        | S    | partition key: `stage#<stage>`, one item collection per list |
//! | `sk`        | S    | sort key: the todo's id, a UUID v7 (sorts in creation order) |
//! | `title`     | S    |                                                             |
//! | `completed` | BOOL |                                                             |
//! | `createdAt` | S    | RFC 3339, derived from the id's own timestamp               |
//!
//! Why: a page of the list is one `Query` on `pk` in key order, which is creation
//! order because the id is time-ordered (no sort in memory, no index, no Scan),
//! bounded by `Limit` and started after the cursor's id with `ExclusiveStartKey`;
//! get/patch/delete address the item directly by `(pk, id)`. Keeping the stage
//! in `pk` also keeps stages apart when one table serves several stages (a
//! local `todo-api --store dynamodb --table t`). The cost of the design is one
//! partition per stage's list, which is what a single shared todo list is;
//! DynamoDB's adaptive capacity serves ~1000 writes/s and ~3000 strongly
//! consistent reads/s on one partition key.
//!
//! # Concurrency
//!
//! - create: `PutItem` with `attribute_not_exists(sk)` (never overwrites).
//! - patch/delete: conditional on `attribute_exists(sk)`, so a todo deleted
//!   concurrently is a 404, never resurrected as a partial item.
//! - toggle-all: `Query` (every page, filtered to the todos not yet in the
//!   wanted state), then one `UpdateItem` per todo conditional on it still
//!   existing and still being in the other state, 16 in flight. Each write
//!   keeps a concurrent title change, skips a concurrently deleted todo, and the
//!   answer counts the writes that changed a todo.
//! - clear-completed: `Query` with a filter, then one `DeleteItem` per todo
//!   conditional on `completed = true`: a todo reopened meanwhile stays, and the
//!   count is what this request deleted.
//!
//! `BatchWriteItem` is deliberately not used: it cannot carry conditions, so a
//! batch delete would remove a todo reopened a moment earlier, and a batch put
//! would overwrite concurrent edits. `TransactWriteItems` (100 items) would make
//! a whole chunk fail on one concurrent delete and costs twice the write units;
//! per-item conditional writes give each todo exactly the semantics the
//! contract describes. Reads are strongly consistent so a write is visible to
//! the next request.

use std::collections::HashMap;
use std::sync::Arc;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use futures_util::{StreamExt, TryStreamExt, stream};

use super::{Backend, BoxFuture, StageConfigError, StoreError};
use crate::model::{Stage, Title, Todo, TodoChanges, new_todo};
use crate::page::{Cursor, Limit, Page};

/// How many single-item writes a bulk operation keeps in flight.
const BULK_CONCURRENCY: usize = 16;

type Item = HashMap<String, AttributeValue>;

/// Which table a DynamoDB store uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TableSource {
    /// Always this table (local runs, tests).
    Fixed(String),
    /// The table named by this API Gateway stage variable of each request
    /// (`tableName` in the Lambda function): one table per stage.
    StageVariable(String),
}

/// Where a resolved table name came from, for error messages and logs.
#[derive(Debug, Clone)]
struct Origin {
    stage: String,
    variable: String,
}

pub(super) struct Dynamo {
    client: Client,
    source: TableSource,
    origin: Option<Origin>,
}

/// DynamoDB's rule for table names: 3 to 255 of `a-z A-Z 0-9 _ - .`.
pub fn is_valid_table_name(name: &str) -> bool {
    (3..=255).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// Creates a table with this module's key schema (`pk` HASH, `sk` RANGE, both
/// strings; on-demand capacity) and waits until it is active: for tests, local
/// runs and as the reference for infrastructure code.
pub async fn create_table(client: &Client, table: &str) -> Result<(), StoreError> {
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
        TableStatus,
    };
    let fail = |operation: &'static str, detail: String| StoreError::Dynamo {
        operation,
        table: table.to_owned(),
        detail,
    };
    let attr = |name: &str| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .map_err(|e| fail("CreateTable", e.to_string()))
    };
    let key = |name: &str, kind: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(kind)
            .build()
            .map_err(|e| fail("CreateTable", e.to_string()))
    };
    client
        .create_table()
        .table_name(table)
        .attribute_definitions(attr("pk")?)
        .attribute_definitions(attr("sk")?)
        .key_schema(key("pk", KeyType::Hash)?)
        .key_schema(key("sk", KeyType::Range)?)
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .map_err(|e| fail("CreateTable", DisplayErrorContext(&e).to_string()))?;
    for _ in 0..600 {
        let out = client
            .describe_table()
            .table_name(table)
            .send()
            .await
            .map_err(|e| fail("DescribeTable", DisplayErrorContext(&e).to_string()))?;
        if out.table.and_then(|t| t.table_status) == Some(TableStatus::Active) {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    Err(fail(
        "DescribeTable",
        "the table did not become ACTIVE within 60 s".into(),
    ))
}

fn pk(stage: &Stage) -> AttributeValue {
    AttributeValue::S(format!("stage#{}", stage.as_str()))
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

impl Dynamo {
    pub(super) fn new(client: Client, source: TableSource) -> Dynamo {
        Dynamo {
            client,
            source,
            origin: None,
        }
    }

    /// The table of this request, or an error when the store still waits for a
    /// stage variable (only reachable if `for_request` was skipped).
    fn table(&self) -> Result<&str, StoreError> {
        match &self.source {
            TableSource::Fixed(t) => Ok(t),
            TableSource::StageVariable(var) => Err(StoreError::Dynamo {
                operation: "table lookup",
                table: format!("(from stage variable {var})"),
                detail: "the request was not resolved to a stage's table".into(),
            }),
        }
    }

    /// Turns an SDK error into a [`StoreError`], naming the stage variable when
    /// the table it names does not exist.
    fn fail<E>(&self, operation: &'static str, err: SdkError<E>) -> StoreError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let table = self.table().unwrap_or("?").to_owned();
        let missing_table = err.code() == Some("ResourceNotFoundException");
        let mut detail = DisplayErrorContext(&err).to_string();
        if missing_table && let Some(o) = &self.origin {
            detail = format!(
                "the table does not exist; the stage variable {:?} of API Gateway stage {:?} names it ({detail})",
                o.variable, o.stage
            );
        }
        StoreError::Dynamo {
            operation,
            table,
            detail,
        }
    }

    fn malformed(&self, item: &Item, problem: &str) -> StoreError {
        let key = match item.get("sk") {
            Some(AttributeValue::S(k)) => k.clone(),
            _ => "(no sk)".into(),
        };
        StoreError::MalformedItem {
            table: self.table().unwrap_or("?").to_owned(),
            key,
            problem: problem.to_owned(),
        }
    }

    /// A conditional write's answer: `Some` when it was applied, `None` when its
    /// condition did not hold (ConditionalCheckFailedException); other failures
    /// are errors naming `operation`.
    fn condition_held<O, E>(
        &self,
        operation: &'static str,
        out: Result<O, SdkError<E>>,
    ) -> Result<Option<O>, StoreError>
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        match out {
            Ok(o) => Ok(Some(o)),
            Err(e) if e.code() == Some("ConditionalCheckFailedException") => Ok(None),
            Err(e) => Err(self.fail(operation, e)),
        }
    }

    /// Runs the conditional `write` on the todo of every item, a few at a time, and
    /// counts those whose condition held (toggle-all and clear-completed: one
    /// conditional write per todo, so concurrent requests never count one twice).
    async fn count_held<F, Fut>(&self, items: &[Item], write: F) -> Result<usize, StoreError>
    where
        F: Fn(String) -> Fut,
        Fut: std::future::Future<Output = Result<bool, StoreError>>,
    {
        let mut ids = Vec::with_capacity(items.len());
        for item in items {
            ids.push(self.todo_from_item(item)?.id);
        }
        let held: Vec<bool> = stream::iter(ids)
            .map(write)
            .buffer_unordered(BULK_CONCURRENCY)
            .try_collect()
            .await?;
        Ok(held.into_iter().filter(|h| *h).count())
    }

    fn todo_from_item(&self, item: &Item) -> Result<Todo, StoreError> {
        let text = |name: &str| match item.get(name) {
            Some(AttributeValue::S(v)) => Ok(v.clone()),
            _ => Err(self.malformed(item, &format!("{name} is not a string"))),
        };
        let completed = match item.get("completed") {
            Some(AttributeValue::Bool(b)) => *b,
            _ => return Err(self.malformed(item, "completed is not a boolean")),
        };
        Ok(Todo {
            id: text("sk")?,
            title: text("title")?,
            completed,
            created_at: text("createdAt")?,
        })
    }

    /// Every item of the stage's list whose `completed` is `completed`, in key
    /// (= creation) order. The filter runs on the server (it does not reduce read
    /// units, only the transfer). For the bulk operations, which must see every todo.
    async fn query_all(&self, stage: &Stage, completed: bool) -> Result<Vec<Item>, StoreError> {
        self.query(stage, Some(completed), None, None).await
    }

    /// The stage's items in key (= creation) order from after `start`, optionally
    /// only those whose `completed` matches, at most `wanted` of them (all when
    /// `None`). DynamoDB stops each response at 1 MB, so the Query continues from
    /// `LastEvaluatedKey` until it has enough or the list ends.
    async fn query(
        &self,
        stage: &Stage,
        completed: Option<bool>,
        wanted: Option<usize>,
        mut start: Option<Item>,
    ) -> Result<Vec<Item>, StoreError> {
        let table = self.table()?;
        let mut items: Vec<Item> = Vec::with_capacity(wanted.unwrap_or(0));
        loop {
            let mut req = self
                .client
                .query()
                .table_name(table)
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(":pk", pk(stage))
                .consistent_read(true)
                .set_exclusive_start_key(start.take());
            if let Some(c) = completed {
                req = req
                    .filter_expression("completed = :c")
                    .expression_attribute_values(":c", AttributeValue::Bool(c));
            }
            if let Some(w) = wanted {
                req = req.limit(i32::try_from(w - items.len()).unwrap_or(i32::MAX));
            }
            let out = req.send().await.map_err(|e| self.fail("Query", e))?;
            items.extend(out.items.unwrap_or_default());
            match out.last_evaluated_key {
                Some(key) if !key.is_empty() && wanted.is_none_or(|w| items.len() < w) => {
                    start = Some(key)
                }
                _ => return Ok(items),
            }
        }
    }

    /// One page: a `Query` with `Limit` = `limit + 1` (so whether more follow is
    /// known without another request, and the last page never links to an
    /// empty one), starting after the cursor's key. A page of 1,000 long titles
    /// is ~2 MB, so at most three requests for the largest page.
    async fn page(
        &self,
        stage: &Stage,
        limit: Limit,
        after: Option<&Cursor>,
    ) -> Result<Page, StoreError> {
        // A position, not an item: DynamoDB starts after this key whether or not
        // an item still has it.
        let start = after
            .map(|c| HashMap::from([("pk".to_owned(), pk(stage)), ("sk".to_owned(), s(c.id()))]));
        let mut items = self
            .query(stage, None, Some(limit.get() + 1), start)
            .await?;
        let more = items.len() > limit.get();
        items.truncate(limit.get());
        let todos = items
            .iter()
            .map(|item| self.todo_from_item(item))
            .collect::<Result<Vec<_>, _>>()?;
        let next = if more {
            todos.last().map(Cursor::after)
        } else {
            None
        };
        Ok(Page { todos, next })
    }

    async fn put(&self, stage: &Stage, title: Title, completed: bool) -> Result<Todo, StoreError> {
        let table = self.table()?;
        let todo = new_todo(title, completed);
        self.client
            .put_item()
            .table_name(table)
            .item("pk", pk(stage))
            .item("sk", s(&todo.id))
            .item("title", s(&todo.title))
            .item("completed", AttributeValue::Bool(todo.completed))
            .item("createdAt", s(&todo.created_at))
            .condition_expression("attribute_not_exists(sk)")
            .send()
            .await
            .map_err(|e| self.fail("PutItem", e))?;
        Ok(todo)
    }

    async fn get_one(&self, stage: &Stage, id: &str) -> Result<Option<Todo>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(self.table()?)
            .key("pk", pk(stage))
            .key("sk", s(id))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.fail("GetItem", e))?;
        out.item.map(|item| self.todo_from_item(&item)).transpose()
    }

    /// Applies `title`/`completed` to an existing todo; `None` when it does not
    /// exist (or no longer does).
    async fn update_one(
        &self,
        stage: &Stage,
        id: &str,
        title: Option<String>,
        completed: Option<bool>,
    ) -> Result<Option<Todo>, StoreError> {
        let mut sets = Vec::new();
        let mut req = self
            .client
            .update_item()
            .table_name(self.table()?)
            .key("pk", pk(stage))
            .key("sk", s(id))
            .condition_expression("attribute_exists(sk)")
            .return_values(ReturnValue::AllNew);
        if let Some(title) = title {
            sets.push("#title = :title");
            req = req
                .expression_attribute_names("#title", "title")
                .expression_attribute_values(":title", s(title));
        }
        if let Some(completed) = completed {
            sets.push("#completed = :completed");
            req = req
                .expression_attribute_names("#completed", "completed")
                .expression_attribute_values(":completed", AttributeValue::Bool(completed));
        }
        if sets.is_empty() {
            return self.get_one(stage, id).await;
        }
        let out = req
            .update_expression(format!("SET {}", sets.join(", ")))
            .send()
            .await;
        match self.condition_held("UpdateItem", out)? {
            Some(out) => out
                .attributes
                .map(|item| self.todo_from_item(&item))
                .transpose(),
            None => Ok(None),
        }
    }

    /// Deletes one todo, optionally only if it is completed; `false` when the
    /// condition did not hold (absent, or reopened).
    async fn delete_one(
        &self,
        stage: &Stage,
        id: &str,
        only_completed: bool,
    ) -> Result<bool, StoreError> {
        let mut req = self
            .client
            .delete_item()
            .table_name(self.table()?)
            .key("pk", pk(stage))
            .key("sk", s(id));
        req = if only_completed {
            req.condition_expression("completed = :t")
                .expression_attribute_values(":t", AttributeValue::Bool(true))
        } else {
            req.condition_expression("attribute_exists(sk)")
        };
        Ok(self
            .condition_held("DeleteItem", req.send().await)?
            .is_some())
    }

    async fn toggle_all(&self, stage: &Stage, completed: bool) -> Result<usize, StoreError> {
        let others = self.query_all(stage, !completed).await?;
        self.count_held(&others, |id| async move {
            self.set_completed_if_not(stage, &id, completed).await
        })
        .await
    }

    /// Sets `completed` on one todo that exists and is not yet in that state;
    /// `false` when it was deleted or changed meanwhile (so it is neither
    /// resurrected nor counted twice by concurrent toggles).
    async fn set_completed_if_not(
        &self,
        stage: &Stage,
        id: &str,
        completed: bool,
    ) -> Result<bool, StoreError> {
        let out = self
            .client
            .update_item()
            .table_name(self.table()?)
            .key("pk", pk(stage))
            .key("sk", s(id))
            .condition_expression("attribute_exists(sk) AND #completed <> :completed")
            .update_expression("SET #completed = :completed")
            .expression_attribute_names("#completed", "completed")
            .expression_attribute_values(":completed", AttributeValue::Bool(completed))
            .send()
            .await;
        Ok(self.condition_held("UpdateItem", out)?.is_some())
    }

    async fn clear_completed(&self, stage: &Stage) -> Result<usize, StoreError> {
        let done = self.query_all(stage, true).await?;
        self.count_held(&done, |id| async move {
            self.delete_one(stage, &id, true).await
        })
        .await
    }
}

impl Backend for Dynamo {
    fn list_page<'a>(
        &'a self,
        stage: &'a Stage,
        limit: Limit,
        after: Option<&'a Cursor>,
    ) -> BoxFuture<'a, Result<Page, StoreError>> {
        Box::pin(self.page(stage, limit, after))
    }

    fn create<'a>(
        &'a self,
        stage: &'a Stage,
        title: Title,
        completed: bool,
    ) -> BoxFuture<'a, Result<Todo, StoreError>> {
        Box::pin(self.put(stage, title, completed))
    }

    fn get<'a>(
        &'a self,
        stage: &'a Stage,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Option<Todo>, StoreError>> {
        Box::pin(self.get_one(stage, id))
    }

    fn update<'a>(
        &'a self,
        stage: &'a Stage,
        id: &'a str,
        changes: TodoChanges,
    ) -> BoxFuture<'a, Result<Option<Todo>, StoreError>> {
        let title = changes.title.map(Title::into_string);
        Box::pin(self.update_one(stage, id, title, changes.completed))
    }

    fn delete<'a>(
        &'a self,
        stage: &'a Stage,
        id: &'a str,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(self.delete_one(stage, id, false))
    }

    fn set_all_completed<'a>(
        &'a self,
        stage: &'a Stage,
        completed: bool,
    ) -> BoxFuture<'a, Result<usize, StoreError>> {
        Box::pin(self.toggle_all(stage, completed))
    }

    fn delete_completed<'a>(
        &'a self,
        stage: &'a Stage,
    ) -> BoxFuture<'a, Result<usize, StoreError>> {
        Box::pin(self.clear_completed(stage))
    }

    fn for_request(
        &self,
        gateway_stage: Option<&str>,
        stage_variable: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<Arc<dyn Backend>>, StageConfigError> {
        let TableSource::StageVariable(variable) = &self.source else {
            return Ok(None);
        };
        let stage = gateway_stage
            .unwrap_or("(none: the request did not come through API Gateway)")
            .to_owned();
        let value = stage_variable(variable).unwrap_or_default();
        if value.is_empty() {
            return Err(StageConfigError::MissingVariable {
                stage,
                variable: variable.clone(),
            });
        }
        if !is_valid_table_name(&value) {
            return Err(StageConfigError::InvalidTable {
                stage,
                variable: variable.clone(),
                value,
            });
        }
        Ok(Some(Arc::new(Dynamo {
            client: self.client.clone(),
            source: TableSource::Fixed(value),
            origin: Some(Origin {
                stage,
                variable: variable.clone(),
            }),
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_follow_dynamodb_rules() {
        for ok in ["abc", "todos-dev", "todo_api.prod", &"a".repeat(255)] {
            assert!(is_valid_table_name(ok), "{ok}");
        }
        for bad in [
            "",
            "ab",
            "todos dev",
            "todos/dev",
            "tödos",
            &"a".repeat(256),
        ] {
            assert!(!is_valid_table_name(bad), "{bad}");
        }
    }
}
