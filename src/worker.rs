//! One core's state: a plain struct built inside the core's thread and shared by that
//! core's tasks through an `Rc`. Nothing in it is touched by another core on the request
//! path: the backend table, the pool, the counters and the alarms are this core's own.
//! `Settings` is what every core reads and nobody changes (the config, the routes, the
//! stats hub); what changes — a new backend table, start accepting, drain — arrives as a
//! `CoreCommand` on the core's own mailbox (`server` applies them).

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use crate::access_log::{CoreLog, SharedLog};
use crate::alarms::Alarms;
use crate::backends::BackendTable;
use crate::clients::Clients;
use crate::config::{Config, Route};
use crate::http::request_id::{self, RequestIds};
use crate::limits::ConnectionLimits;
use crate::parking::Parking;
use crate::retry_budget::RetryBudget;
use crate::router::RouteTable;
use crate::stats::{CoreCounters, StatsHub};
use crate::upstream::pool::IdlePool;

/// What every core reads and nobody changes while it runs.
pub struct Settings {
    pub config: Config,
    pub routes: RouteTable,
    /// Each route's name (`Route::name`), by index, for the access log.
    pub route_names: Vec<String>,
    pub stats: Arc<StatsHub>,
    pub limits: ConnectionLimits,
    /// This process's random part of the request IDs it makes.
    pub request_token: u64,
    /// The access log's shared end; None when there is no access log.
    pub(crate) access_log: Option<SharedLog>,
}

impl Settings {
    pub fn new(config: Config, stats: Arc<StatsHub>, limits: ConnectionLimits) -> Settings {
        let routes = RouteTable::new(&config.routes);
        Settings {
            route_names: config.routes.iter().map(Route::name).collect(),
            config,
            routes,
            stats,
            limits,
            request_token: request_id::process_token(),
            access_log: None,
        }
    }
}

/// One core's state.
pub(crate) struct Worker {
    pub(crate) id: usize,
    pub(crate) settings: Arc<Settings>,
    pub(crate) counters: Arc<CoreCounters>,
    pub(crate) pool: RefCell<IdlePool>,
    pub(crate) alarms: Alarms,
    /// Client connections of this core: how many, from where, which rest.
    pub(crate) clients: Clients,
    /// Keep-alive connections parked without a task (by their peer's address).
    pub(crate) parking: Parking<std::net::SocketAddr>,
    /// This core's retry budget per backend (index of `Config::backends`).
    pub(crate) retry_budgets: Vec<RetryBudget>,
    /// Makes this core's request IDs.
    pub(crate) ids: RequestIds,
    /// This core's end of the access log.
    pub(crate) access_log: Option<Rc<CoreLog>>,
    table: RefCell<Rc<BackendTable>>,
}

impl Worker {
    pub(crate) fn new(id: usize, settings: Arc<Settings>, table: BackendTable) -> Worker {
        Worker {
            id,
            counters: settings.stats.core_counters(id),
            pool: RefCell::new(IdlePool::new(settings.config.timeouts.pool_idle)),
            alarms: Alarms::default(),
            clients: Clients::default(),
            parking: Parking::new(),
            retry_budgets: settings
                .config
                .backends
                .iter()
                .map(|_| RetryBudget::default())
                .collect(),
            table: RefCell::new(Rc::new(table)),
            ids: RequestIds::new(settings.request_token, id),
            access_log: settings
                .access_log
                .as_ref()
                .map(|shared| Rc::new(CoreLog::new(shared, id))),
            settings,
        }
    }

    /// The newest backend table this core has received.
    pub(crate) fn table(&self) -> Rc<BackendTable> {
        self.table.borrow().clone()
    }

    /// Takes a new table: requests from now on use it.
    pub(crate) fn set_table(&self, table: BackendTable) {
        *self.table.borrow_mut() = Rc::new(table);
    }
}
