//! `hearken-loadtest`: plays a conferencing provider against a Hearken
//! server on this machine. Every speaker is its own WHIP session (a str0m
//! client on its own UDP socket) sending real Opus speech with RFC 6464
//! audio levels, talking and falling silent (with or without DTX) at
//! `--talk-ratio`; with `--ingest roq`, every call is a native ingest whose
//! speakers send the same speech as RTP over shared QUIC connections. It
//! measures session setup, and reads the server's CPU, memory, packet
//! counters and latency histogram over the hold. With `--reconnect`, a
//! speaker whose session dies (its node killed) goes on in a new session
//! for the same call and participant. See `loadtest/README.md`.
//!
//! Exit status: 0 when the run completed (its errors are in the report),
//! 1 when it could not run, 2 for refused flags.

#![forbid(unsafe_code)]

mod audio;
mod cli;
mod client;
mod media;
mod metrics;
mod native;
mod process;
mod reconnect;
mod report;
mod run;
mod schedule;
mod whip;

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser as _;
use rand::Rng as _;

fn main() -> ExitCode {
    // clap exits with status 2 on unparsable flags.
    let args = cli::Args::parse();
    let plan = match args.validate(|| {
        let mut rng = rand::rng();
        (format!("{:08x}", rng.random::<u32>()), rng.random())
    }) {
        Ok(plan) => plan,
        Err(e) => {
            eprintln!("hearken-loadtest: {e}");
            return ExitCode::from(2);
        }
    };
    let json = plan.json;
    start_watchdog(run::overall_deadline(&plan));
    match run::run(plan) {
        Ok(report) => {
            if json {
                println!("{}", report.to_json_line());
            } else {
                print!("{}", report.to_table());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("hearken-loadtest: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Ends the process if the run overruns its bound: every phase has its own
/// timeout, so this only fires on a bug, and a load generator that never
/// stops (keeping thousands of sessions up) is worse than one that dies.
fn start_watchdog(limit: Duration) {
    let spawned = std::thread::Builder::new()
        .name("watchdog".to_owned())
        .spawn(move || {
            std::thread::sleep(limit);
            eprintln!(
                "hearken-loadtest: overall deadline of {:.0} s exceeded; exiting",
                limit.as_secs_f64()
            );
            std::process::exit(1);
        });
    if let Err(e) = spawned {
        eprintln!("hearken-loadtest: cannot start the watchdog: {e}");
    }
}
