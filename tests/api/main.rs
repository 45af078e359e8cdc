//! Integration tests: the real server over HTTP on a free port.

mod audit;
mod capture;
mod clients;
mod dashboard;
mod docs;
mod faults;
mod feedback;
mod fuzz;
mod helpers;
mod hostile;
mod logging;
mod models;
mod monitor;
mod oip;
mod pg;
mod postgres;
mod predict;
mod readme;
mod reload;
mod request_ids;
mod rollups;
mod shutdown;
mod spill;
mod store_props;
mod train;
mod validation;
