//! Integration tests: the real server over HTTP on a free port.

mod helpers;
mod logging;
mod models;
mod predict;
mod shutdown;
mod train;
mod validation;
