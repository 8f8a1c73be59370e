//! Analysis modules: the `database` import and an instance wrapper that
//! returns the module's report.
//!
//! What a module's SQL can do is decided here, in layers that each hold on
//! their own: the connection is opened read-only ([`open_read_only`], the
//! only maker of a [`ReadOnlyDb`]) with `query_only`; an authorizer allows
//! `SELECT`, reads of the main database, recursive CTEs and an allow-list of
//! pure functions, and denies everything else (`PRAGMA`, `ATTACH`,
//! `DETACH`, transactions, writes, `randomblob`, `load_extension`, ...) at
//! prepare time; `sqlite3_limit`s cap one string or blob, the SQL text and
//! attached databases (none); each query stops at the call's wall-clock
//! deadline and when its SQLite instructions would spend the call's fuel
//! (progress handler); rows are copied out under a running byte and row cap
//! checked before each value is copied. The fuel for the instructions and
//! the bytes is charged to the module. A report bigger than
//! `max_report_bytes` is refused. Every limit is the store's [`Limits`].

use super::bindings::analysis_world::{AnalysisModule as World, AnalysisModulePre};
use super::bindings::{DbValue, LogLevel, Report, Rows};
use super::guard::{self, Guard, Guarded};
use super::{guest_text, Limits, ModuleError, ModuleInfo, Runtime};
use rusqlite::hooks::{AuthAction, AuthContext, Authorization};
use rusqlite::limits::Limit;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use wasmtime::component::Linker;
use wasmtime::{Store, StoreContextMut};

/// Why the host refused or stopped a module's query. The module sees its
/// text; the host keeps the value ([`AnalysisInstance::query_errors`]).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum QueryError {
    #[error("no database is attached")]
    NoDatabase,
    #[error("not allowed in analysis SQL: {what}")]
    Refused { what: String },
    #[error("only read-only statements (SELECT) are allowed")]
    NotReadOnly,
    #[error("a string, blob or statement is larger than the {cap}-byte limit")]
    TooBig { cap: usize },
    #[error("more than {cap} rows; add a LIMIT or aggregate")]
    TooManyRows { cap: usize },
    #[error("the result passed {cap} bytes; select fewer or smaller values")]
    TooManyBytes { cap: usize },
    #[error("query ran past the call's deadline")]
    Deadline,
    #[error("query ran out of fuel")]
    OutOfFuel,
    #[error("{0}")]
    Sql(String),
}

/// A database connection fit for analysis modules: opened read-only and
/// `query_only`. Only [`open_read_only`] makes one.
pub struct ReadOnlyDb(Connection);

/// Opens `path` read-only for a module: SQLite refuses writes on this
/// connection; the sandbox adds its authorizer and limits when a module
/// instance takes it.
pub fn open_read_only(path: &Path) -> rusqlite::Result<ReadOnlyDb> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.pragma_update(None, "query_only", true)?;
    Ok(ReadOnlyDb(conn))
}

/// Functions a module's SQL may call: pure ones over their arguments. Not
/// here, so refused: `randomblob`, `zeroblob`, `random`, `load_extension`,
/// `fts3_tokenizer`, `sqlite_*`, `changes`, `current_*`, `soundex`, ...
const ALLOWED_FUNCTIONS: &[&str] = &[
    // aggregates and window functions
    "avg",
    "count",
    "group_concat",
    "string_agg",
    "max",
    "min",
    "sum",
    "total",
    "row_number",
    "rank",
    "dense_rank",
    "percent_rank",
    "cume_dist",
    "ntile",
    "lag",
    "lead",
    "first_value",
    "last_value",
    "nth_value",
    // scalars
    "abs",
    "char",
    "coalesce",
    "concat",
    "concat_ws",
    "format",
    "glob",
    "hex",
    "if",
    "ifnull",
    "iif",
    "instr",
    "length",
    "like",
    "likelihood",
    "likely",
    "lower",
    "ltrim",
    "nullif",
    "octet_length",
    "printf",
    "quote",
    "replace",
    "round",
    "rtrim",
    "sign",
    "substr",
    "substring",
    "trim",
    "typeof",
    "unhex",
    "unicode",
    "unlikely",
    "upper",
    // date and time
    "date",
    "time",
    "datetime",
    "julianday",
    "strftime",
    "unixepoch",
    "timediff",
    // maths
    "acos",
    "acosh",
    "asin",
    "asinh",
    "atan",
    "atan2",
    "atanh",
    "ceil",
    "ceiling",
    "cos",
    "cosh",
    "degrees",
    "exp",
    "floor",
    "ln",
    "log",
    "log10",
    "log2",
    "mod",
    "pi",
    "pow",
    "power",
    "radians",
    "sin",
    "sinh",
    "sqrt",
    "tan",
    "tanh",
    "trunc",
    // JSON
    "json",
    "json_array",
    "json_array_length",
    "json_extract",
    "json_object",
    "json_patch",
    "json_quote",
    "json_remove",
    "json_replace",
    "json_set",
    "json_insert",
    "json_type",
    "json_valid",
    "json_group_array",
    "json_group_object",
    "->",
    "->>",
];

/// The authorizer's rule: `SELECT`, reads of `main`, recursive CTEs and the
/// allowed functions; nothing else.
fn authorize(ctx: &AuthContext<'_>) -> bool {
    match &ctx.action {
        AuthAction::Select | AuthAction::Recursive => true,
        AuthAction::Read { .. } => ctx.database_name == Some("main"),
        AuthAction::Function { function_name } => ALLOWED_FUNCTIONS
            .iter()
            .any(|f| f.eq_ignore_ascii_case(function_name)),
        _ => false,
    }
}

/// Why the progress handler stopped a query.
const RUNNING: u8 = 0;
const STOP_DEADLINE: u8 = 1;
const STOP_FUEL: u8 = 2;

/// SQLite instructions between two progress-handler calls.
const OPS_PER_CHECK: u64 = 1_000;

/// What the progress handler of one query measured.
#[derive(Default)]
struct Meter {
    ops: AtomicU64,
    stop: AtomicU8,
}

/// The database side of an analysis store: the guarded connection and what
/// its authorizer refused last.
struct Db {
    conn: Connection,
    refused: Arc<Mutex<Option<String>>>,
}

impl Db {
    /// Puts the sandbox's authorizer and limits on a read-only connection.
    fn guard(db: ReadOnlyDb, limits: &Limits) -> rusqlite::Result<Db> {
        let conn = db.0;
        let clamp = |n: usize| i32::try_from(n).unwrap_or(i32::MAX);
        conn.set_limit(Limit::SQLITE_LIMIT_LENGTH, clamp(limits.max_query_bytes))?;
        conn.set_limit(Limit::SQLITE_LIMIT_SQL_LENGTH, clamp(limits.max_sql_bytes))?;
        conn.set_limit(Limit::SQLITE_LIMIT_ATTACHED, 0)?;
        conn.set_limit(Limit::SQLITE_LIMIT_WORKER_THREADS, 0)?;
        conn.set_limit(Limit::SQLITE_LIMIT_VARIABLE_NUMBER, 1_000)?;
        let refused = Arc::new(Mutex::new(None));
        let slot = refused.clone();
        conn.authorizer(Some(move |ctx: AuthContext<'_>| {
            if authorize(&ctx) {
                return Authorization::Allow;
            }
            if let Ok(mut s) = slot.lock() {
                s.get_or_insert_with(|| guest_text(&format!("{:?}", ctx.action), 200));
            }
            Authorization::Deny
        }));
        Ok(Db { conn, refused })
    }
}

/// Store data of an analysis instance: the limit guard and the database.
pub struct AnalysisHost {
    guard: Guard,
    db: Option<Db>,
    /// Queries of the last call the host refused or stopped.
    query_errors: Vec<QueryError>,
}

impl Guarded for AnalysisHost {
    fn guard(&self) -> &Guard {
        &self.guard
    }
    fn guard_mut(&mut self) -> &mut Guard {
        &mut self.guard
    }
}

fn to_sql(v: &DbValue) -> rusqlite::types::Value {
    use rusqlite::types::Value as V;
    match v {
        DbValue::Null => V::Null,
        DbValue::Integer(i) => V::Integer(*i),
        DbValue::Real(f) => V::Real(*f),
        DbValue::Text(s) => V::Text(s.clone()),
        DbValue::Blob(b) => V::Blob(b.clone()),
    }
}

fn value_bytes(v: &DbValue) -> usize {
    match v {
        DbValue::Text(s) => s.len(),
        DbValue::Blob(b) => b.len(),
        _ => 8,
    }
}

/// Bytes a result costs the host per value and per row beyond its payload.
const VALUE_OVERHEAD: usize = std::mem::size_of::<DbValue>();
const ROW_OVERHEAD: usize = std::mem::size_of::<Vec<DbValue>>();

/// What one query cost: host bytes moved and SQLite instructions run.
struct Cost {
    bytes: usize,
    ops: u64,
}

impl AnalysisHost {
    /// Maps a SQLite error of a query to what stopped it.
    fn query_error(&self, e: rusqlite::Error, meter: &Meter) -> QueryError {
        use rusqlite::ErrorCode;
        let limits = &self.guard.limits;
        match e {
            rusqlite::Error::SqliteFailure(f, _) => match f.code {
                ErrorCode::OperationInterrupted => match meter.stop.load(Ordering::Relaxed) {
                    STOP_FUEL => QueryError::OutOfFuel,
                    _ => QueryError::Deadline,
                },
                ErrorCode::AuthorizationForStatementDenied => QueryError::Refused {
                    what: self
                        .db
                        .as_ref()
                        .and_then(|d| d.refused.lock().ok()?.take())
                        .unwrap_or_else(|| "statement".into()),
                },
                ErrorCode::TooBig => QueryError::TooBig {
                    cap: limits.max_query_bytes.min(limits.max_sql_bytes),
                },
                _ => QueryError::Sql(guest_text(&e.to_string(), 1_024)),
            },
            other => QueryError::Sql(guest_text(&other.to_string(), 1_024)),
        }
    }

    /// Runs one module query with `fuel` to spend; returns the rows (or why
    /// not) and what the query cost.
    fn run_query(
        &mut self,
        sql: &str,
        params: &[DbValue],
        fuel: u64,
    ) -> (Result<Rows, QueryError>, Cost) {
        let mut cost = Cost {
            bytes: sql.len() + params.iter().map(value_bytes).sum::<usize>(),
            ops: 0,
        };
        let meter = Arc::new(Meter::default());
        let result = self.query_rows(sql, params, fuel, &meter, &mut cost);
        cost.ops = meter.ops.load(Ordering::Relaxed);
        (result, cost)
    }

    fn query_rows(
        &self,
        sql: &str,
        params: &[DbValue],
        fuel: u64,
        meter: &Arc<Meter>,
        cost: &mut Cost,
    ) -> Result<Rows, QueryError> {
        let db = self.db.as_ref().ok_or(QueryError::NoDatabase)?;
        let limits = &self.guard.limits;
        let deadline = self.guard.call_deadline();
        if Instant::now() >= deadline {
            return Err(QueryError::Deadline);
        }
        if let Ok(mut s) = db.refused.lock() {
            *s = None;
        }
        let conn = &db.conn;
        let ops_budget = fuel / limits.fuel_per_sql_op.max(1);
        let m = meter.clone();
        conn.progress_handler(
            OPS_PER_CHECK as i32,
            Some(move || {
                let ops = m.ops.fetch_add(OPS_PER_CHECK, Ordering::Relaxed) + OPS_PER_CHECK;
                let stop = if ops > ops_budget {
                    STOP_FUEL
                } else if Instant::now() > deadline {
                    STOP_DEADLINE
                } else {
                    RUNNING
                };
                m.stop.store(stop, Ordering::Relaxed);
                stop != RUNNING
            }),
        );
        let result = (|| {
            let mut stmt = conn.prepare(sql).map_err(|e| self.query_error(e, meter))?;
            if !stmt.readonly() {
                return Err(QueryError::NotReadOnly);
            }
            let columns: Vec<String> = stmt.column_names().into_iter().map(String::from).collect();
            cost.bytes += columns.iter().map(String::len).sum::<usize>();
            let params: Vec<rusqlite::types::Value> = params.iter().map(to_sql).collect();
            let mut rows = stmt
                .query(rusqlite::params_from_iter(params))
                .map_err(|e| self.query_error(e, meter))?;
            let mut out = Vec::new();
            let n = columns.len();
            loop {
                let row = match rows.next() {
                    Ok(Some(row)) => row,
                    Ok(None) => break,
                    Err(e) => return Err(self.query_error(e, meter)),
                };
                if out.len() >= limits.max_query_rows {
                    return Err(QueryError::TooManyRows {
                        cap: limits.max_query_rows,
                    });
                }
                cost.bytes += ROW_OVERHEAD;
                let mut vals = Vec::with_capacity(n);
                for i in 0..n {
                    let v = row.get_ref(i).map_err(|e| self.query_error(e, meter))?;
                    let payload = match v {
                        ValueRef::Text(t) | ValueRef::Blob(t) => t.len(),
                        _ => 0,
                    };
                    // Checked before the value is copied out of SQLite.
                    cost.bytes += VALUE_OVERHEAD + payload;
                    if cost.bytes > limits.max_query_bytes {
                        return Err(QueryError::TooManyBytes {
                            cap: limits.max_query_bytes,
                        });
                    }
                    vals.push(match v {
                        ValueRef::Null => DbValue::Null,
                        ValueRef::Integer(i) => DbValue::Integer(i),
                        ValueRef::Real(f) => DbValue::Real(f),
                        ValueRef::Text(t) => DbValue::Text(String::from_utf8_lossy(t).into_owned()),
                        ValueRef::Blob(b) => DbValue::Blob(b.to_vec()),
                    });
                }
                out.push(vals);
            }
            Ok(Rows { columns, rows: out })
        })();
        conn.progress_handler(0, None::<fn() -> bool>);
        result
    }

    /// The schema: one `CREATE` statement per table.
    fn schema(&self) -> String {
        let Some(db) = self.db.as_ref() else {
            return String::new();
        };
        let mut out = String::new();
        if let Ok(mut stmt) = db.conn.prepare(
            "SELECT sql FROM sqlite_master WHERE type = 'table' AND sql IS NOT NULL ORDER BY name",
        ) {
            if let Ok(rows) = stmt.query_map([], |r| r.get::<_, String>(0)) {
                for sql in rows.flatten() {
                    out.push_str(&sql);
                    out.push_str(";\n");
                }
            }
        }
        out
    }
}

/// Defines every import of the analysis world: `host.log` (the guard's),
/// `database.query` and `database.schema`, each charged fuel for its work.
pub(super) fn define_imports(linker: &mut Linker<AnalysisHost>) -> wasmtime::Result<()> {
    guard::define_log(linker)?;
    let mut db = linker.instance(&guard::interface("database"))?;
    db.func_wrap(
        "query",
        |mut store: StoreContextMut<'_, AnalysisHost>, (sql, params): (String, Vec<DbValue>)| {
            let fuel = guard::fuel_left(&store);
            let host = store.data_mut();
            let (result, cost) = host.run_query(&sql, &params, fuel);
            let limits = &host.guard.limits;
            let spent = limits
                .import_fuel(cost.bytes)
                .saturating_add(cost.ops.saturating_mul(limits.fuel_per_sql_op));
            let result = result.map_err(|e| {
                let text = e.to_string();
                host.query_errors.push(e);
                text
            });
            guard::charge(&mut store, spent)?;
            Ok((result,))
        },
    )?;
    db.func_wrap(
        "schema",
        |mut store: StoreContextMut<'_, AnalysisHost>, (): ()| {
            let schema = store.data().schema();
            let fuel = store.data().guard.limits.import_fuel(schema.len());
            guard::charge(&mut store, fuel)?;
            Ok((schema,))
        },
    )?;
    Ok(())
}

/// A loaded, validated analysis component.
#[derive(Clone)]
pub struct AnalysisModule {
    runtime: Arc<Runtime>,
    pre: AnalysisModulePre<AnalysisHost>,
    info: ModuleInfo,
}

impl AnalysisModule {
    pub(super) fn new(
        runtime: Arc<Runtime>,
        pre: AnalysisModulePre<AnalysisHost>,
        info: ModuleInfo,
    ) -> Self {
        AnalysisModule { runtime, pre, info }
    }

    pub fn info(&self) -> &ModuleInfo {
        &self.info
    }

    /// A fresh instance reading `db` (open it with [`open_read_only`]).
    pub fn instantiate(&self, db: Option<ReadOnlyDb>) -> Result<AnalysisInstance, ModuleError> {
        let guard = Guard::new(&self.runtime, &self.info);
        let db = db
            .map(|d| Db::guard(d, guard.limits()))
            .transpose()
            .map_err(|e| ModuleError::Host(format!("guarding the module's database: {e}")))?;
        let data = AnalysisHost {
            guard,
            db,
            query_errors: Vec::new(),
        };
        let mut store = guard::new_store(&self.runtime, data);
        let world = guard::call(&mut store, "instantiate", |s| self.pre.instantiate(s))?;
        Ok(AnalysisInstance {
            store,
            world,
            info: self.info.clone(),
        })
    }
}

pub struct AnalysisInstance {
    store: Store<AnalysisHost>,
    world: World,
    info: ModuleInfo,
}

/// The bytes a report takes: every string, plus 16 a metric.
fn report_bytes(r: &Report) -> usize {
    use super::bindings::MetricValue;
    r.module.len()
        + r.summary.len()
        + r.metrics
            .iter()
            .map(|m| {
                16 + m.section.len()
                    + m.key.len()
                    + match &m.value {
                        MetricValue::Text(t) => t.len(),
                        _ => 0,
                    }
            })
            .sum::<usize>()
}

impl AnalysisInstance {
    pub fn info(&self) -> &ModuleInfo {
        &self.info
    }

    pub fn logs(&self) -> &[(LogLevel, String)] {
        &self.store.data().guard.logs
    }

    /// Queries of the last call the host refused or stopped, in order.
    pub fn query_errors(&self) -> &[QueryError] {
        &self.store.data().query_errors
    }

    /// Runs the analysis at `now` and returns its report, refused when it is
    /// larger than `max_report_bytes`.
    pub fn analyze(&mut self, now: i64) -> Result<Report, ModuleError> {
        let world = &self.world;
        self.store.data_mut().query_errors.clear();
        let result = guard::call(&mut self.store, "analyze", |s| {
            world.trading_contract_analysis().call_analyze(s, now)
        })?;
        let limits = &self.store.data().guard.limits;
        let report = result.map_err(|reason| ModuleError::BadOutput {
            call: "analyze",
            reason: guest_text(&reason, limits.max_string_bytes),
        })?;
        let bytes = report_bytes(&report);
        if bytes > limits.max_report_bytes {
            return Err(ModuleError::ReportTooLarge {
                call: "analyze",
                bytes,
                cap: limits.max_report_bytes,
            });
        }
        Ok(report)
    }
}
