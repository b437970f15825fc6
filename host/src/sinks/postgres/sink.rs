//! The PostgreSQL sink. Under checkpoints, each batch is first tried in a transaction that is
//! rolled back (unless `check_writes = false`), so a record the table refuses (a constraint, a
//! value its column type cannot take) goes to the dead-letter output with the server's reason;
//! the rows that pass are kept in the epoch's commit record and written only once the epoch
//! has committed, in one transaction that also moves this source partition's sequence number
//! in the epochs table.
//! A redo finds the number already there and changes nothing. Without checkpoints (a file
//! source), each batch is written at once.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use rustls::pki_types::pem::PemObject;
use serde::{Deserialize, Serialize};
use tokio_postgres::Client;
use tokio_postgres::types::ToSql;
use tokio_postgres_rustls::MakeRustlsConnect;

use super::PostgresSinkConfig;
use super::statements::{self, Column};
use crate::sinks::commit_record::{self, Sequence};
use crate::sinks::resilience::Breaker;
use crate::sinks::staging::Scope;
use crate::sinks::{Rejection, Sink, SinkBatch, SinkError, io_error};
use crate::storage::io_runtime;

/// Where one route's records go.
struct Target {
    table: String,
    statement: String,
    upsert_key: Vec<String>,
}

/// One table's rows of an epoch: inserted in order, or upserted (the last of each key).
#[derive(Debug)]
enum Pending {
    Insert(Vec<String>),
    Upsert(BTreeMap<Vec<u8>, String>),
}

/// A record of a batch as a row: its index in the batch, its upsert key (empty for inserts)
/// and its JSON.
struct Row {
    index: usize,
    key: Vec<u8>,
    json: String,
}

/// What the checkpoint keeps for this sink: the epoch's rows by table, and its sequence
/// number.
#[derive(Debug, Default, Serialize, Deserialize)]
struct CommitRecord {
    seq: i64,
    tables: Vec<(String, Vec<String>)>,
}

/// How a set of rows is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// In a transaction rolled back at the end: which rows would the tables refuse?
    Trial,
    /// Committed, the refused rows returned.
    Direct,
    /// Committed under sequence number `seq` unless this source already applied it; refused
    /// rows go to the rejected-rows table.
    Fenced(i64),
}

/// What writing a set of rows did.
#[derive(Debug, Default)]
struct Applied {
    /// Rows refused: table index, row index, the server's reason.
    refused: Vec<(usize, usize, String)>,
    /// Rows written.
    written: u64,
    /// The sequence number was applied before: nothing was written.
    fenced: bool,
}

/// The PostgreSQL sink.
pub struct PostgresSink {
    name: String,
    url: String,
    tls: MakeRustlsConnect,
    timeout: std::time::Duration,
    breaker: Arc<Breaker>,
    client: Option<Client>,
    targets: BTreeMap<String, Target>,
    epochs_table: String,
    rejected_table: String,
    source: String,
    check_writes: bool,
    pending: BTreeMap<String, Pending>,
    sequence: Sequence,
    scoped: bool,
}

/// Whether `error` is about the data (a value, a constraint), not the server or the link.
fn is_data_error(error: &tokio_postgres::Error) -> bool {
    error
        .code()
        .is_some_and(|code| matches!(&code.code()[..2], "22" | "23"))
}

/// The server's message of an error, else its text with its causes.
fn reason(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => match db.detail() {
            Some(detail) => format!("{} ({detail})", db.message()),
            None => db.message().to_string(),
        },
        None => {
            // The client's own errors keep the why in their sources (a TLS handshake's).
            let mut text = error.to_string();
            let mut source = std::error::Error::source(error);
            while let Some(cause) = source {
                text.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            text
        }
    }
}

/// The TLS settings: the server's certificate verified against the authorities of
/// `ca_file` (PEM), or the system's roots. Read once per file for all of a sink's partitions.
fn tls(ca_file: Option<&Path>) -> Result<MakeRustlsConnect, String> {
    static MADE: Mutex<BTreeMap<Option<PathBuf>, MakeRustlsConnect>> = Mutex::new(BTreeMap::new());
    let mut made = MADE.lock().unwrap_or_else(PoisonError::into_inner);
    let key = ca_file.map(Path::to_path_buf);
    if let Some(tls) = made.get(&key) {
        return Ok(tls.clone());
    }
    let tls = tls_from_files(ca_file)?;
    made.insert(key, tls.clone());
    Ok(tls)
}

fn tls_from_files(ca_file: Option<&Path>) -> Result<MakeRustlsConnect, String> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let pem =
                std::fs::read(path).map_err(|e| format!("ca_file {}: {e}", path.display()))?;
            for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
                let cert = cert.map_err(|e| format!("ca_file {}: {e}", path.display()))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("ca_file {}: {e}", path.display()))?;
            }
        }
        None => {
            for cert in rustls_native_certs::load_native_certs().certs {
                // A system certificate rustls cannot use is left out, as libpq would.
                let _ = roots.add(cert);
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

async fn connect(
    url: &str,
    tls: &MakeRustlsConnect,
    timeout: std::time::Duration,
) -> Result<Client, String> {
    let connecting = tokio_postgres::connect(url, tls.clone());
    let (client, connection) = tokio::time::timeout(timeout, connecting)
        .await
        .map_err(|_| format!("no connection within {timeout:?}"))?
        .map_err(|e| reason(&e))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(error = %e, "PostgreSQL connection ended.");
        }
    });
    Ok(client)
}

/// Connects to the sink's server and runs `SELECT 1`, within the sink's timeout.
pub fn ping(config: &PostgresSinkConfig) -> Result<(), String> {
    io_runtime().block_on(async {
        let tls = tls(config.ca_file.as_deref())?;
        let client = connect(&config.url, &tls, config.timeout.0).await?;
        client
            .simple_query("SELECT 1")
            .await
            .map(|_| ())
            .map_err(|e| reason(&e))
    })
}

/// The columns of `table` that records fill: those named, else every column without a
/// default.
async fn columns_of(client: &Client, table: &str, named: &[String]) -> Result<Vec<Column>, String> {
    let rows = client
        .query(statements::COLUMNS, &[&table])
        .await
        .map_err(|e| reason(&e))?;
    let all: Vec<Column> = rows
        .iter()
        .map(|row| Column {
            name: row.get(0),
            sql_type: row.get(1),
            has_default: row.get(2),
        })
        .collect();
    if all.is_empty() {
        return Err(format!("table {table} does not exist (or has no columns)"));
    }
    if named.is_empty() {
        return Ok(all.into_iter().filter(|c| !c.has_default).collect());
    }
    named
        .iter()
        .map(|name| {
            all.iter()
                .find(|c| &c.name == name)
                .cloned()
                .ok_or_else(|| format!("table {table} has no column {name:?}"))
        })
        .collect()
}

/// A JSON array of `rows`.
fn json_array<'a>(rows: impl Iterator<Item = &'a String>) -> String {
    let mut array = String::from("[");
    for (i, row) in rows.enumerate() {
        if i > 0 {
            array.push(',');
        }
        array.push_str(row);
    }
    array.push(']');
    array
}

/// Writes `rows` with `statement` inside the open transaction: all at once, or, when the
/// data is refused, row by row under savepoints. Returns the refused rows with reasons.
async fn write_rows(
    client: &Client,
    statement: &str,
    rows: &[String],
) -> Result<Vec<(usize, String)>, tokio_postgres::Error> {
    client.batch_execute("SAVEPOINT weir_batch").await?;
    let all = json_array(rows.iter());
    match client.execute(statement, &[&all]).await {
        Ok(_) => {
            client.batch_execute("RELEASE SAVEPOINT weir_batch").await?;
            return Ok(Vec::new());
        }
        Err(e) if is_data_error(&e) => {
            client
                .batch_execute("ROLLBACK TO SAVEPOINT weir_batch")
                .await?;
        }
        Err(e) => return Err(e),
    }
    let mut refused = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        client.batch_execute("SAVEPOINT weir_row").await?;
        let one = json_array(std::iter::once(row));
        match client.execute(statement, &[&one]).await {
            Ok(_) => client.batch_execute("RELEASE SAVEPOINT weir_row").await?,
            Err(e) if is_data_error(&e) => {
                client
                    .batch_execute("ROLLBACK TO SAVEPOINT weir_row")
                    .await?;
                refused.push((i, reason(&e)));
            }
            Err(e) => return Err(e),
        }
    }
    Ok(refused)
}

impl PostgresSink {
    /// Creates the sink: connects, reads the target tables' columns and creates the epochs
    /// and rejected-rows tables if they are missing.
    pub fn new(
        name: &str,
        config: &PostgresSinkConfig,
        scope: Option<Scope>,
        breaker: Arc<Breaker>,
    ) -> Result<Self, SinkError> {
        let setup = |reason: String| SinkError::Setup {
            sink: name.to_string(),
            reason,
        };
        let timeout = config.timeout.0;
        let tls = tls(config.ca_file.as_deref()).map_err(setup)?;
        let (client, targets) = io_runtime()
            .block_on(async {
                let client = connect(&config.url, &tls, timeout).await?;
                for create in [
                    statements::create_epochs(&config.epochs_table),
                    statements::create_rejected(&config.rejected_table),
                ] {
                    client
                        .batch_execute(&create)
                        .await
                        .map_err(|e| reason(&e))?;
                }
                let mut targets = BTreeMap::new();
                for route in &config.routes {
                    let table = config.table_of(route);
                    let name = table.table.clone().unwrap_or_default();
                    let columns = columns_of(&client, &name, &table.columns).await?;
                    for key in &table.upsert_key {
                        if !columns.iter().any(|c| &c.name == key) {
                            return Err(format!(
                                "upsert_key {key:?} is not a written column of {name}"
                            ));
                        }
                    }
                    let statement = statements::write_statement(&name, &columns, &table.upsert_key);
                    targets.insert(
                        route.clone(),
                        Target {
                            table: name,
                            statement,
                            upsert_key: table.upsert_key,
                        },
                    );
                }
                Ok((client, targets))
            })
            .map_err(|e: String| setup(format!("url: {e}")))?;
        Ok(PostgresSink {
            name: name.to_string(),
            url: config.url.clone(),
            tls,
            timeout,
            breaker,
            client: Some(client),
            targets,
            epochs_table: config.epochs_table.clone(),
            rejected_table: config.rejected_table.clone(),
            source: scope
                .as_ref()
                .map_or_else(|| "local".to_string(), Scope::label),
            check_writes: config.check_writes,
            pending: BTreeMap::new(),
            sequence: Sequence::default(),
            scoped: scope.is_some(),
        })
    }

    /// Writes `tables` (table, rows) as `mode` says, retried behind the breaker.
    fn apply(
        &mut self,
        mode: Mode,
        tables: &[(String, Vec<String>)],
    ) -> Result<Applied, SinkError> {
        let statements: Vec<&str> = tables
            .iter()
            .map(|(table, _)| {
                self.targets
                    .values()
                    .find(|t| &t.table == table)
                    .map(|t| t.statement.as_str())
                    .ok_or_else(|| {
                        io_error(
                            &self.name,
                            format!("no route of this sink writes table {table}"),
                        )
                    })
            })
            .collect::<Result<_, _>>()?;
        let (url, tls, timeout, slot) = (&self.url, &self.tls, self.timeout, &mut self.client);
        let (sink, source) = (&self.name, &self.source);
        let (epochs, rejected) = (&self.epochs_table, &self.rejected_table);
        let what = match mode {
            Mode::Trial => "checking rows",
            Mode::Direct | Mode::Fenced(_) => "writing rows",
        };
        self.breaker.call(what, || {
            io_runtime().block_on(async {
                if slot.as_ref().is_none_or(Client::is_closed) {
                    *slot = Some(connect(url, tls, timeout).await?);
                }
                let client = slot.as_ref().ok_or("not connected")?;
                let run = in_transaction(
                    client,
                    mode,
                    &statements,
                    tables,
                    sink,
                    source,
                    epochs,
                    rejected,
                );
                match tokio::time::timeout(timeout * 4, run).await {
                    Ok(Ok(applied)) => Ok(applied),
                    Ok(Err(e)) => {
                        let _ = client.batch_execute("ROLLBACK").await;
                        Err(reason(&e))
                    }
                    Err(_) => {
                        // The statement may still run: drop the connection with it.
                        *slot = None;
                        Err(format!("no answer within {:?}", timeout * 4))
                    }
                }
            })
        })
    }

    /// Writes a committed epoch's rows, unless they were written before.
    fn apply_record(&mut self, record: &CommitRecord) -> Result<(), SinkError> {
        let applied = self.apply(Mode::Fenced(record.seq), &record.tables)?;
        let rows: usize = record.tables.iter().map(|(_, rows)| rows.len()).sum();
        let count = |result: &'static str, n: u64| {
            metrics::counter!("weir_sink_postgres_rows_total", "sink" => self.name.clone(), "result" => result)
                .increment(n);
        };
        if applied.fenced {
            count("fenced", rows as u64);
        } else {
            count("applied", applied.written);
            count("rejected", applied.refused.len() as u64);
        }
        crate::failpoint::hit("rows-written");
        Ok(())
    }

    fn take_pending(&mut self) -> CommitRecord {
        let by_route = std::mem::take(&mut self.pending);
        let tables = by_route
            .into_iter()
            .filter_map(|(route, pending)| {
                let table = self.targets.get(&route)?.table.clone();
                let rows = match pending {
                    Pending::Insert(rows) => rows,
                    Pending::Upsert(rows) => rows.into_values().collect(),
                };
                Some((table, rows))
            })
            .collect();
        CommitRecord {
            seq: self.sequence.advance(),
            tables,
        }
    }
}

/// Runs one transaction writing `tables` as `mode` says.
#[expect(
    clippy::too_many_arguments,
    reason = "the sink's fields, borrowed apart"
)]
async fn in_transaction(
    client: &Client,
    mode: Mode,
    statements: &[&str],
    tables: &[(String, Vec<String>)],
    sink: &str,
    source: &str,
    epochs: &str,
    rejected: &str,
) -> Result<Applied, tokio_postgres::Error> {
    client.batch_execute("BEGIN").await?;
    let mut applied = Applied::default();
    if let Mode::Fenced(seq) = mode {
        let [make, lock] = statements::lock_epoch(epochs);
        client.execute(&make, &[&sink, &source]).await?;
        let last: i64 = client.query_one(&lock, &[&sink, &source]).await?.get(0);
        if last >= seq {
            client.batch_execute("ROLLBACK").await?;
            applied.fenced = true;
            return Ok(applied);
        }
    }
    for (t, ((table, rows), statement)) in tables.iter().zip(statements).enumerate() {
        let refused = write_rows(client, statement, rows).await?;
        applied.written += (rows.len() - refused.len()) as u64;
        for (row, why) in refused {
            if let Mode::Fenced(seq) = mode {
                let params: [&(dyn ToSql + Sync); 6] =
                    [&sink, &source, &seq, table, &why, &rows[row]];
                client
                    .execute(&statements::insert_rejected(rejected), &params)
                    .await?;
            }
            applied.refused.push((t, row, why));
        }
    }
    match mode {
        Mode::Trial => client.batch_execute("ROLLBACK").await?,
        Mode::Direct => client.batch_execute("COMMIT").await?,
        Mode::Fenced(seq) => {
            client
                .execute(&statements::set_epoch(epochs), &[&sink, &source, &seq])
                .await?;
            client.batch_execute("COMMIT").await?;
        }
    }
    Ok(applied)
}

impl Sink for PostgresSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn write(&mut self, records: &SinkBatch) -> Result<Vec<Rejection>, SinkError> {
        let mut rejections = Vec::new();
        let mut rows: BTreeMap<&str, Vec<Row>> = BTreeMap::new();
        for (index, record) in records.iter().enumerate() {
            let Some(target) = self.targets.get(record.route) else {
                continue;
            };
            let mut key = Vec::new();
            let mut missing = None;
            for field in &target.upsert_key {
                match record.field(field) {
                    Some(value) if value != b"null" => {
                        key.extend_from_slice(value);
                        key.push(0);
                    }
                    _ => missing = Some(field),
                }
            }
            if let Some(field) = missing {
                rejections.push(Rejection {
                    index,
                    reason: format!(
                        "missing field {field:?}: it is the upsert key of {}",
                        target.table
                    ),
                });
                continue;
            }
            let json = String::from_utf8_lossy(record.value).into_owned();
            rows.entry(record.route)
                .or_default()
                .push(Row { index, key, json });
        }
        let routes: Vec<&str> = rows.keys().copied().collect();
        // The JSON moves into the statements' input and, once checked, into the epoch.
        let tables: Vec<(String, Vec<String>)> = rows
            .iter_mut()
            .map(|(route, rows)| {
                let json = rows.iter_mut().map(|r| std::mem::take(&mut r.json));
                (self.targets[*route].table.clone(), json.collect())
            })
            .collect();
        if tables.is_empty() {
            return Ok(rejections);
        }
        let applied = match (self.scoped, self.check_writes) {
            (true, true) => self.apply(Mode::Trial, &tables)?,
            // Unchecked: whatever the tables refuse is found at the commit.
            (true, false) => Applied::default(),
            (false, _) => self.apply(Mode::Direct, &tables)?,
        };
        let mut refused: Vec<Vec<bool>> =
            tables.iter().map(|(_, r)| vec![false; r.len()]).collect();
        for (t, row, reason) in applied.refused {
            refused[t][row] = true;
            rejections.push(Rejection {
                index: rows[routes[t]][row].index,
                reason: format!("postgres: {}: {reason}", tables[t].0),
            });
        }
        if !self.scoped {
            metrics::counter!("weir_sink_postgres_rows_total", "sink" => self.name.clone(), "result" => "applied")
                .increment(applied.written);
            return Ok(rejections);
        }
        for (t, (_, json)) in tables.into_iter().enumerate() {
            let route = routes[t];
            let upsert = !self.targets[route].upsert_key.is_empty();
            let pending = self.pending.entry(route.to_string()).or_insert_with(|| {
                if upsert {
                    Pending::Upsert(BTreeMap::new())
                } else {
                    Pending::Insert(Vec::new())
                }
            });
            let kept = rows[route].iter().zip(json).zip(&refused[t]);
            for ((row, json), _) in kept.filter(|(_, refused)| !**refused) {
                match pending {
                    Pending::Insert(rows) => rows.push(json),
                    Pending::Upsert(rows) => {
                        rows.insert(row.key.clone(), json);
                    }
                }
            }
        }
        Ok(rejections)
    }

    /// Writes without checkpoints commit at once; with them, they wait for their epoch.
    fn flush(&mut self) -> Result<(), SinkError> {
        Ok(())
    }

    fn close(&mut self) -> Result<(), SinkError> {
        self.flush()
    }

    fn prepare_commit(&mut self) -> Result<Option<Vec<u8>>, SinkError> {
        let record = self.take_pending();
        commit_record::encode(&self.name, &record)
    }

    fn commit(&mut self, record: &[u8]) -> Result<(), SinkError> {
        let record = commit_record::decode::<CommitRecord>(&self.name, record)?;
        self.apply_record(&record)
    }

    fn recover(&mut self, record: Option<&[u8]>) -> Result<(), SinkError> {
        self.pending.clear();
        if let Some(bytes) = record {
            let record = commit_record::decode::<CommitRecord>(&self.name, bytes)?;
            self.apply_record(&record)?;
            self.sequence.recovered(record.seq);
        }
        Ok(())
    }
}
