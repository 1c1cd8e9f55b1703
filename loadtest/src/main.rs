//! `hearken-loadtest`: the load generator. Not built yet; see `loadtest/README.md`.

fn main() {
    eprintln!("hearken-loadtest: not implemented yet (tracked in the capacity issue)");
    std::process::exit(2);
}
