//! Operating the server: ending calls by API, SIGTERM drain, the Grafana
//! dashboard against a live server, the Kubernetes manifests against the
//! config and the server they deploy.

mod call_end_api;
mod grafana_dashboard;
mod kubernetes;
mod panic_containment;
mod sigterm_drain;
