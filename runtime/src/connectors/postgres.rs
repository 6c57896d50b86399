//! Window results (or a select job's records) as rows of a PostgreSQL
//! table.
//!
//! With exactly-once checkpoints the sink is two-phase, like the file and
//! Kafka sinks: a worker's rows since its last barrier are held in memory,
//! sealed at the barrier as part of that checkpoint, and when the checkpoint
//! has every worker's state they are inserted in one transaction that also
//! records the checkpoint id in `streamjob_commits` (one row per job). That
//! transaction is the commit point: `_metadata` is written after it, and on
//! restore a pending checkpoint whose id `streamjob_commits` holds is rolled
//! forward. A commit for an id already recorded is skipped, so no epoch is
//! ever inserted twice. Without exactly-once checkpoints rows are inserted as
//! they come (at-least-once).
//!
//! Rows cannot be taken back, so a run that would write rows the table
//! already has is refused rather than run: a fresh start of a job with
//! committed rows, or a restore of a snapshot older than the last commit
//! (an old savepoint). With `upsertKey` rows are idempotent and both are
//! allowed; the job's commit record then goes back to where the run starts.

use std::collections::BTreeMap;
use std::io;

use postgres::types::{ToSql, Type};
use postgres::{Client, NoTls, Statement};
use serde_json::Value;

use crate::connectors::TwoPhaseCommitter;
use crate::spec::{AggregateFunction, JobSpec, PostgresSinkSpec};

/// Where the commit point of each checkpoint is recorded.
const COMMITS: &str = "streamjob_commits";

/// One row: a text value (or NULL) per column, cast by PostgreSQL to the
/// column's type.
type Row = Vec<Option<String>>;

/// For a result field: the type a created table gives its column, and the
/// column types that hold its values without loss (string types always
/// do); `None` for any type.
fn field_type(spec: &JobSpec, field: &str) -> (&'static str, Option<&'static [&'static str]>) {
    const TIMESTAMPS: &[&str] = &["timestamp with time zone", "timestamp without time zone"];
    const INTEGERS: &[&str] = &["bigint", "integer", "numeric", "double precision", "real"];
    const NUMBERS: &[&str] = &["numeric", "double precision", "real"];
    if spec.key.iter().any(|k| k == field) || spec.select.iter().any(|f| f == field) {
        return ("text", None);
    }
    match field {
        "window_start" | "window_end" | "emit_time" => ("timestamptz", Some(TIMESTAMPS)),
        "partial" => ("boolean", Some(&["boolean"])),
        _ => match spec.aggregates.iter().find(|a| a.name == field) {
            Some(a)
                if matches!(
                    a.function,
                    AggregateFunction::Count | AggregateFunction::CountDistinct
                ) =>
            {
                ("bigint", Some(INTEGERS))
            }
            _ => ("double precision", Some(NUMBERS)),
        },
    }
}

fn quote(identifier: &str) -> String {
    format!("\"{}\"", identifier.replace('"', "\"\""))
}

/// `schema.table` or `table`, quoted.
fn quote_table(table: &str) -> String {
    match table.split_once('.') {
        Some((schema, table)) => format!("{}.{}", quote(schema), quote(table)),
        None => quote(table),
    }
}

/// A PostgreSQL error with what was being done; the server's own message
/// when there is one.
fn pg_error(doing: &str, e: postgres::Error) -> io::Error {
    let detail = match e.as_db_error() {
        Some(db) => db.message().to_string(),
        None => e.to_string(),
    };
    io::Error::other(format!("sink.postgres: {doing}: {detail}"))
}

fn connect(pg: &PostgresSinkSpec) -> io::Result<Client> {
    let mut config: postgres::Config = pg.url.parse().map_err(|e| {
        io::Error::other(format!("sink.postgres.url: not a connection string: {e}"))
    })?;
    if config.get_password().is_none() {
        if let Ok(password) = std::env::var("PGPASSWORD") {
            config.password(password);
        }
    }
    config.connect_timeout(std::time::Duration::from_secs(10));
    config
        .connect(NoTls)
        .map_err(|e| pg_error("cannot connect (sink.postgres.url)", e))
}

/// A table's columns: name, type (without its modifier: a `varchar(10)`
/// column is cast to `character varying`, so that an over-long value fails
/// at the insert instead of being cut), type category; none when it does
/// not exist.
fn table_columns(client: &mut Client, table: &str) -> io::Result<Vec<(String, String, String)>> {
    let rows = client
        .query(
            "SELECT a.attname::text, format_type(a.atttypid, NULL), t.typcategory::text \
             FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid \
             WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped \
             ORDER BY a.attnum",
            &[&quote_table(table)],
        )
        .map_err(|e| pg_error(&format!("cannot read the columns of {table}"), e))?;
    Ok(rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect())
}

/// The checkpoint whose rows the table holds last for `job`, if any.
fn committed(client: &mut Client, job: &str) -> io::Result<Option<u64>> {
    let exists: Option<String> = client
        .query_one("SELECT to_regclass($1)::text", &[&COMMITS])
        .map_err(|e| pg_error("cannot look for streamjob_commits", e))?
        .get(0);
    if exists.is_none() {
        return Ok(None);
    }
    let row = client
        .query_opt(
            &format!("SELECT epoch FROM {COMMITS} WHERE job = $1"),
            &[&job],
        )
        .map_err(|e| pg_error("cannot read streamjob_commits", e))?;
    Ok(row.map(|r| r.get::<_, i64>(0) as u64))
}

/// A table that result rows are inserted into.
pub struct PostgresTable {
    client: Client,
    job: String,
    /// The table's name as the spec gives it, for messages.
    name: String,
    fields: Vec<String>,
    insert: InsertSql,
    /// Rows per `INSERT` statement, and the statement for a full batch.
    batch: usize,
    insert_batch: Statement,
    /// Positions of `upsertKey` in `fields`.
    upsert_key: Vec<usize>,
    /// Fields whose column is `json`/`jsonb`: their values go as JSON text.
    json: Vec<bool>,
}

impl PostgresTable {
    /// Connects, and checks (or creates) the table.
    pub fn open(spec: &JobSpec, pg: &PostgresSinkSpec) -> io::Result<Self> {
        let mut client = connect(pg)?;
        let fields = pg.fields(spec);
        let mut columns = table_columns(&mut client, &pg.table)?;
        if columns.is_empty() {
            if !pg.create_table {
                return Err(io::Error::other(format!(
                    "sink.postgres.table: table {} does not exist: create it, or set createTable: true",
                    pg.table
                )));
            }
            create_table(&mut client, spec, pg, &fields)?;
            columns = table_columns(&mut client, &pg.table)?;
        }
        check_columns(spec, pg, &fields, &columns)?;
        let insert = InsertSql::new(pg, &fields, &columns);
        // PostgreSQL takes at most 65535 parameters a statement.
        let batch = (65_535 / fields.len()).clamp(1, MAX_BATCH);
        let insert_batch = insert
            .prepare(&mut client, batch)
            .map_err(|e| pg_error(&format!("cannot insert into {}", pg.table), e))?;
        let json = fields
            .iter()
            .map(|f| {
                columns
                    .iter()
                    .any(|(name, type_, _)| name == f && (type_ == "json" || type_ == "jsonb"))
            })
            .collect();
        let upsert_key = pg
            .upsert_key
            .iter()
            .filter_map(|k| fields.iter().position(|f| f == k))
            .collect();
        Ok(PostgresTable {
            client,
            job: spec.name.clone(),
            name: pg.table.clone(),
            fields,
            insert,
            batch,
            insert_batch,
            upsert_key,
            json,
        })
    }

    /// Inserts result lines at once: at least once (a restore inserts again
    /// what came after its checkpoint).
    pub fn write(&mut self, lines: &[String]) -> io::Result<()> {
        let rows = self.rows(lines)?;
        self.insert(rows, None)
    }

    fn rows(&self, lines: &[String]) -> io::Result<Vec<Row>> {
        lines.iter().map(|line| self.row(line)).collect()
    }

    fn row(&self, line: &str) -> io::Result<Row> {
        let value: Value = serde_json::from_str(line).map_err(io::Error::other)?;
        Ok(self
            .fields
            .iter()
            .zip(&self.json)
            .map(|(f, json)| match &value[f] {
                Value::Null => None,
                Value::String(s) if !json => Some(s.clone()),
                other => Some(other.to_string()),
            })
            .collect())
    }

    /// Inserts `rows`, with the commit record of checkpoint `epoch` when
    /// there is one, in one transaction.
    fn insert(&mut self, rows: Vec<Row>, epoch: Option<u64>) -> io::Result<()> {
        let mut tx = self
            .client
            .transaction()
            .map_err(|e| pg_error("cannot begin a transaction", e))?;
        if let Some(epoch) = epoch {
            let done: Option<i64> = tx
                .query_opt(
                    &format!("SELECT epoch FROM {COMMITS} WHERE job = $1 FOR UPDATE"),
                    &[&self.job],
                )
                .map_err(|e| pg_error("cannot read streamjob_commits", e))?
                .map(|r| r.get(0));
            match done {
                // This very checkpoint is in: its rows must not go in twice.
                Some(done) if done == epoch as i64 => {
                    tracing::warn!(epoch, "checkpoint's rows already committed: skipped");
                    return Ok(()); // dropping the transaction rolls it back
                }
                // Ids only grow within one checkpoint storage: a later
                // commit recorded means another storage, or another job of
                // the same name, wrote this table.
                Some(done) if done > epoch as i64 => {
                    return Err(io::Error::other(format!(
                        "sink.postgres: {COMMITS} records checkpoint {done} of job {}, after this \
                         run's checkpoint {epoch}: its rows come from another checkpoint storage \
                         or another job of the same name. Give the job its own name, or restore \
                         from the storage that wrote them",
                        self.job
                    )));
                }
                _ => {}
            }
        }
        let rows = if self.upsert_key.is_empty() {
            rows
        } else {
            last_per_key(rows, &self.upsert_key)
        };
        for (i, chunk) in rows.chunks(self.batch).enumerate() {
            let params: Vec<&(dyn ToSql + Sync)> = chunk
                .iter()
                .flatten()
                .map(|v| v as &(dyn ToSql + Sync))
                .collect();
            let done = if chunk.len() == self.batch {
                tx.execute(&self.insert_batch, &params)
            } else {
                let sql = self.insert.for_rows(chunk.len());
                tx.prepare_typed(&sql, &vec![Type::TEXT; params.len()])
                    .and_then(|statement| tx.execute(&statement, &params))
            };
            done.map_err(|e| pg_error("cannot insert rows", e))?;
            if i == 0 {
                // A crash with part of the epoch sent and not committed.
                crate::failpoint::fail_at("mid-commit", epoch.unwrap_or_default());
            }
        }
        if let Some(epoch) = epoch {
            tx.execute(
                &format!(
                    "INSERT INTO {COMMITS} (job, epoch) VALUES ($1, $2) \
                     ON CONFLICT (job) DO UPDATE SET epoch = EXCLUDED.epoch, committed_at = now()"
                ),
                &[&self.job, &(epoch as i64)],
            )
            .map_err(|e| pg_error("cannot record the commit", e))?;
        }
        tx.commit()
            .map_err(|e| pg_error("cannot commit the transaction", e))
    }
}

/// The exactly-once PostgreSQL sink: a worker's rows since its last barrier
/// are held in memory, and each checkpoint's rows are inserted in the
/// transaction that records the checkpoint in `streamjob_commits`.
pub struct PostgresSink {
    table: PostgresTable,
    /// Per worker, its rows since its last barrier.
    open: Vec<Vec<Row>>,
    /// Rows sealed at each checkpoint's barrier, waiting for its commit.
    sealed: BTreeMap<u64, Vec<Row>>,
}

impl PostgresSink {
    /// Opens the table for `workers` workers, and `streamjob_commits`.
    pub fn open(spec: &JobSpec, pg: &PostgresSinkSpec, workers: usize) -> io::Result<Self> {
        let mut table = PostgresTable::open(spec, pg)?;
        table
            .client
            .batch_execute(&format!(
                "CREATE TABLE IF NOT EXISTS {COMMITS} (job text PRIMARY KEY, \
                 epoch bigint NOT NULL, committed_at timestamptz NOT NULL DEFAULT now())"
            ))
            .map_err(|e| pg_error("cannot create streamjob_commits", e))?;
        Ok(PostgresSink {
            table,
            open: vec![Vec::new(); workers],
            sealed: BTreeMap::new(),
        })
    }

    fn seal(&mut self, worker: usize, id: u64) {
        let rows = std::mem::take(&mut self.open[worker]);
        self.sealed.entry(id).or_default().extend(rows);
    }
}

/// The commit record is the job's row in `streamjob_commits`.
impl TwoPhaseCommitter for PostgresSink {
    fn last_committed(&mut self) -> io::Result<Option<u64>> {
        committed(&mut self.table.client, &self.table.job)
    }

    /// Refuses a run that would insert committed rows again; rows not
    /// committed were never inserted.
    fn begin(&mut self, restored: Option<u64>) -> io::Result<()> {
        let table = &mut self.table;
        let committed = committed(&mut table.client, &table.job)?;
        let upserts = !table.upsert_key.is_empty();
        refuse_rewrites(&table.name, &table.job, upserts, restored, committed)?;
        if committed.is_some_and(|epoch| restored.is_none_or(|r| epoch > r)) {
            // Upserts let a run start before the last commit (from scratch,
            // or from an older snapshot): the record goes back with it, or
            // its checkpoints would pass for committed ones.
            rewind_commits(&mut table.client, &table.job, restored)?;
        }
        Ok(())
    }

    fn write(
        &mut self,
        worker: usize,
        _target: usize,
        lines: Vec<String>,
        _keys: Vec<String>,
    ) -> io::Result<()> {
        let rows = self.table.rows(&lines)?;
        self.open[worker].extend(rows);
        Ok(())
    }

    fn pre_commit(
        &mut self,
        worker: usize,
        checkpoint: u64,
        _positions: Vec<(String, i32, i64)>,
    ) -> io::Result<()> {
        self.seal(worker, checkpoint);
        Ok(())
    }

    fn commit(&mut self, id: u64) -> io::Result<()> {
        let later = self.sealed.split_off(&(id + 1));
        let rows = std::mem::replace(&mut self.sealed, later)
            .into_values()
            .flatten()
            .collect();
        self.table.insert(rows, Some(id))
    }

    fn workers(&self) -> usize {
        self.open.len()
    }

    /// Rows not committed were never sent.
    fn abort(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn rewind_commits(client: &mut Client, job: &str, to: Option<u64>) -> io::Result<()> {
    let done = match to {
        Some(epoch) => client.execute(
            &format!("UPDATE {COMMITS} SET epoch = $2, committed_at = now() WHERE job = $1"),
            &[&job, &(epoch as i64)],
        ),
        None => client.execute(&format!("DELETE FROM {COMMITS} WHERE job = $1"), &[&job]),
    };
    done.map(drop)
        .map_err(|e| pg_error("cannot rewind streamjob_commits", e))
}

fn create_table(
    client: &mut Client,
    spec: &JobSpec,
    pg: &PostgresSinkSpec,
    fields: &[String],
) -> io::Result<()> {
    let mut columns: Vec<String> = fields
        .iter()
        .map(|f| format!("{} {}", quote(f), field_type(spec, f).0))
        .collect();
    if !pg.upsert_key.is_empty() {
        let key: Vec<String> = pg.upsert_key.iter().map(|k| quote(k)).collect();
        columns.push(format!("PRIMARY KEY ({})", key.join(", ")));
    }
    let sql = format!(
        "CREATE TABLE IF NOT EXISTS {} ({})",
        quote_table(&pg.table),
        columns.join(", ")
    );
    client
        .batch_execute(&sql)
        .map_err(|e| pg_error(&format!("cannot create table {}", pg.table), e))
}

/// Every field has a column that can hold it.
fn check_columns(
    spec: &JobSpec,
    pg: &PostgresSinkSpec,
    fields: &[String],
    columns: &[(String, String, String)],
) -> io::Result<()> {
    for field in fields {
        let Some((_, type_, category)) = columns.iter().find(|(name, ..)| name == field) else {
            let names: Vec<&str> = columns.iter().map(|(n, ..)| n.as_str()).collect();
            return Err(io::Error::other(format!(
                "sink.postgres: table {} has no column {field:?} (it has {}): add it, or leave \
                 {field} out with sink.postgres.columns",
                pg.table,
                names.join(", ")
            )));
        };
        let (wanted, holds) = field_type(spec, field);
        let string = category == "S";
        if holds.is_some_and(|types| !string && !types.contains(&type_.as_str())) {
            return Err(io::Error::other(format!(
                "sink.postgres: column {field:?} of table {} is {type_}, which cannot hold the \
                 field's values: make it {wanted} (or text)",
                pg.table
            )));
        }
    }
    Ok(())
}

/// Rows per `INSERT` at most: a few round trips per checkpoint instead of
/// one per row.
const MAX_BATCH: usize = 500;

/// `INSERT … VALUES (CAST($1 AS type), …), (…)`, upserting on `upsertKey`.
struct InsertSql {
    head: String,
    types: Vec<String>,
    tail: String,
}

impl InsertSql {
    fn new(pg: &PostgresSinkSpec, fields: &[String], columns: &[(String, String, String)]) -> Self {
        let types = fields
            .iter()
            .map(|field| {
                columns
                    .iter()
                    .find(|(name, ..)| name == field)
                    .map(|(_, t, _)| t.clone())
                    .expect("checked columns")
            })
            .collect();
        let names: Vec<String> = fields.iter().map(|f| quote(f)).collect();
        let head = format!(
            "INSERT INTO {} ({}) VALUES ",
            quote_table(&pg.table),
            names.join(", ")
        );
        let mut tail = String::new();
        if !pg.upsert_key.is_empty() {
            let key: Vec<String> = pg.upsert_key.iter().map(|k| quote(k)).collect();
            let updates: Vec<String> = fields
                .iter()
                .filter(|f| !pg.upsert_key.contains(f))
                .map(|f| format!("{0} = EXCLUDED.{0}", quote(f)))
                .collect();
            tail = format!(" ON CONFLICT ({}) ", key.join(", "));
            if updates.is_empty() {
                tail.push_str("DO NOTHING");
            } else {
                tail.push_str(&format!("DO UPDATE SET {}", updates.join(", ")));
            }
        }
        InsertSql { head, types, tail }
    }

    fn for_rows(&self, rows: usize) -> String {
        let width = self.types.len();
        let tuples: Vec<String> = (0..rows)
            .map(|r| {
                let values: Vec<String> = self
                    .types
                    .iter()
                    .enumerate()
                    .map(|(c, t)| format!("CAST(${} AS {t})", r * width + c + 1))
                    .collect();
                format!("({})", values.join(", "))
            })
            .collect();
        format!("{}{}{}", self.head, tuples.join(", "), self.tail)
    }

    fn prepare(&self, client: &mut Client, rows: usize) -> Result<Statement, postgres::Error> {
        client.prepare_typed(
            &self.for_rows(rows),
            &vec![Type::TEXT; rows * self.types.len()],
        )
    }
}

/// With upserts a row replaces any earlier one of its key, and one
/// statement may not touch a row twice: of each key only its last row, in
/// the order those came.
/// Keys are compared as sent (text); a key with a NULL matches nothing in
/// PostgreSQL, so such rows are all kept.
fn last_per_key(rows: Vec<Row>, key: &[usize]) -> Vec<Row> {
    let mut seen = std::collections::HashSet::new();
    let mut kept: Vec<Row> = rows
        .into_iter()
        .rev()
        .filter(|row| {
            let key: Vec<&Option<String>> = key.iter().map(|&i| &row[i]).collect();
            key.iter().any(|v| v.is_none())
                || seen.insert(key.iter().map(|v| (*v).clone()).collect::<Vec<_>>())
        })
        .collect();
    kept.reverse();
    kept
}

/// Rows cannot be taken back: a run that would insert rows the table holds
/// already is refused (unless upserts make them idempotent).
fn refuse_rewrites(
    table: &str,
    job: &str,
    upserts: bool,
    restored: Option<u64>,
    committed: Option<u64>,
) -> io::Result<()> {
    if upserts {
        return Ok(());
    }
    match (restored, committed) {
        (None, Some(epoch)) => Err(io::Error::other(format!(
            "sink.postgres: table {table} holds rows job {job} committed up to checkpoint {epoch}; \
             starting with empty state would insert them again. Restore the job \
             (--from-latest-checkpoint), set sink.postgres.upsertKey, or delete the rows and \
             the job's row in {COMMITS} to start over",
        ))),
        (Some(restored), Some(epoch)) if epoch > restored => Err(io::Error::other(format!(
            "sink.postgres: table {table} holds rows up to checkpoint {epoch}, after the snapshot \
             {restored} being restored: they would be inserted again. Restore a newer snapshot, \
             or set sink.postgres.upsertKey",
        ))),
        _ => Ok(()),
    }
}
