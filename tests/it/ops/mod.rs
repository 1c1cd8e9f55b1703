//! Operating the server: ending calls by API, SIGTERM drain, the Grafana
//! dashboard against a live server.

mod call_end_api;
mod grafana_dashboard;
mod panic_containment;
mod sigterm_drain;
