//! Operating the server: ending calls by API, SIGTERM drain, `kill -9` and
//! the restart that recovers, a full disk, the Grafana dashboard against a
//! live server, the Kubernetes manifests against the config and the server
//! they deploy.

mod call_end_api;
mod full_disk;
mod grafana_dashboard;
mod kill_nine;
mod kubernetes;
mod panic_containment;
mod sigterm_drain;
