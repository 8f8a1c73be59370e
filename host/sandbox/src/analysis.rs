//! Analysis modules: a read-only database import (SELECT only, enforced by
//! SQLite on a read-only connection, with row and time limits) and an
//! instance wrapper that returns the module's report.

use super::bindings::analysis_world::trading::contract::database;
use super::bindings::analysis_world::{AnalysisModule as World, AnalysisModulePre};
use super::bindings::strategy_world::trading::contract::{host, types};
use super::bindings::{DbValue, LogLevel, Report, Rows};
use super::guard::{self, Guard, Guarded};
use super::{ModuleError, ModuleInfo, Runtime};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;
use wasmtime::Store;

/// Store data of an analysis instance: the limit guard and the database.
pub struct AnalysisHost {
    guard: Guard,
    db: Option<Connection>,
}

impl Guarded for AnalysisHost {
    fn guard(&self) -> &Guard {
        &self.guard
    }
    fn guard_mut(&mut self) -> &mut Guard {
        &mut self.guard
    }
}

/// Opens `path` read-only for a module: SQLite refuses writes on this connection.
pub fn open_read_only(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.pragma_update(None, "query_only", true)?;
    Ok(conn)
}

impl host::Host for AnalysisHost {
    fn log(&mut self, level: LogLevel, message: String) {
        self.guard.log(level, &message);
    }
}

impl types::Host for AnalysisHost {}

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

impl AnalysisHost {
    fn run_query(&mut self, sql: &str, params: &[DbValue]) -> Result<Rows, String> {
        let conn = self.db.as_ref().ok_or("no database is attached")?;
        let mut stmt = conn.prepare(sql).map_err(|e| format!("{e}"))?;
        if !stmt.readonly() {
            return Err("only read-only statements (SELECT) are allowed".into());
        }
        let columns: Vec<String> = stmt.column_names().into_iter().map(String::from).collect();
        let params: Vec<rusqlite::types::Value> = params.iter().map(to_sql).collect();
        let deadline = Instant::now() + self.guard.limits.deadline();
        conn.progress_handler(10_000, Some(move || Instant::now() > deadline));
        let mut rows = stmt
            .query(rusqlite::params_from_iter(params))
            .map_err(|e| format!("{e}"))?;
        let mut out = Vec::new();
        let n = columns.len();
        let result = loop {
            match rows.next() {
                Ok(Some(row)) => {
                    if out.len() >= self.guard.limits.max_query_rows {
                        break Err(format!(
                            "more than {} rows; add a LIMIT or aggregate",
                            self.guard.limits.max_query_rows
                        ));
                    }
                    let mut vals = Vec::with_capacity(n);
                    for i in 0..n {
                        vals.push(match row.get_ref(i).map_err(|e| format!("{e}"))? {
                            ValueRef::Null => DbValue::Null,
                            ValueRef::Integer(i) => DbValue::Integer(i),
                            ValueRef::Real(f) => DbValue::Real(f),
                            ValueRef::Text(t) => {
                                DbValue::Text(String::from_utf8_lossy(t).into_owned())
                            }
                            ValueRef::Blob(b) => DbValue::Blob(b.to_vec()),
                        });
                    }
                    out.push(vals);
                }
                Ok(None) => break Ok(()),
                Err(rusqlite::Error::SqliteFailure(e, _))
                    if e.code == rusqlite::ErrorCode::OperationInterrupted =>
                {
                    break Err("query ran past the deadline".into())
                }
                Err(e) => break Err(format!("{e}")),
            }
        };
        drop(rows);
        conn.progress_handler(0, None::<fn() -> bool>);
        result.map(|()| Rows { columns, rows: out })
    }
}

impl database::Host for AnalysisHost {
    fn query(&mut self, sql: String, params: Vec<DbValue>) -> Result<Rows, String> {
        self.run_query(&sql, &params)
    }

    fn schema(&mut self) -> String {
        let Some(conn) = self.db.as_ref() else {
            return String::new();
        };
        let mut out = String::new();
        if let Ok(mut stmt) = conn.prepare(
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
    pub fn instantiate(&self, db: Option<Connection>) -> Result<AnalysisInstance, ModuleError> {
        let data = AnalysisHost {
            guard: Guard::new(&self.runtime, &self.info),
            db,
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

impl AnalysisInstance {
    pub fn info(&self) -> &ModuleInfo {
        &self.info
    }

    pub fn logs(&self) -> &[(LogLevel, String)] {
        &self.store.data().guard.logs
    }

    /// Runs the analysis at `now` and returns its report.
    pub fn analyze(&mut self, now: i64) -> Result<Report, ModuleError> {
        let world = &self.world;
        let result = guard::call(&mut self.store, "analyze", |s| {
            world.trading_contract_analysis().call_analyze(s, now)
        })?;
        result.map_err(|reason| ModuleError::BadOutput {
            call: "analyze",
            reason,
        })
    }
}
