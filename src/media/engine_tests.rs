//! Unit tests of the engine's own machinery; whole calls in simulated time
//! are in `tests/it/engine/`.

use super::*;

#[test]
fn the_timer_heap_gives_the_earliest_first_and_one_live_entry_per_owner() {
    let t0 = Instant::now();
    let ms = |n| t0 + Duration::from_millis(n);
    let mut timers = Timers::default();
    let mut scheduled = None;
    let key = SessionKey(1);
    timers.schedule(&mut scheduled, ms(50), Timer::Session(key));
    // A later deadline waits for the live entry: no new entry.
    timers.schedule(&mut scheduled, ms(80), Timer::Session(key));
    assert_eq!(timers.heap.len(), 1);
    // An earlier one replaces it; the old entry stays behind, stale.
    timers.schedule(&mut scheduled, ms(20), Timer::Session(key));
    assert_eq!(timers.heap.len(), 2);
    assert_eq!(scheduled, Some(ms(20)));
    timers.push(ms(30), Timer::Call(CallId::parse("c").unwrap()));
    assert_eq!(timers.peek(), Some(ms(20)));
    assert!(timers.pop_due(ms(19)).is_none(), "nothing due yet");
    let due: Vec<Instant> =
        std::iter::from_fn(|| timers.pop_due(ms(100)).map(|(at, _)| at)).collect();
    assert_eq!(due, vec![ms(20), ms(30), ms(50)]);
}

#[test]
fn the_wall_clock_follows_the_monotonic_clock_both_ways() {
    let t0 = Instant::now() + Duration::from_secs(10);
    let utc = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
        .unwrap()
        .with_timezone(&Utc);
    let clock = WallClock { instant: t0, utc };
    assert_eq!(
        clock.utc(t0 + Duration::from_millis(1500)).to_rfc3339(),
        "2026-01-01T00:00:01.500+00:00"
    );
    assert_eq!(
        clock.utc(t0 - Duration::from_secs(2)).to_rfc3339(),
        "2025-12-31T23:59:58+00:00"
    );
}

#[test]
fn panic_messages_are_read_from_both_payload_kinds() {
    let from_str = catch_unwind(|| panic!("static text")).unwrap_err();
    assert_eq!(panic_message(from_str.as_ref()), "static text");
    let n = 7;
    let from_string = catch_unwind(|| panic!("formatted {n}")).unwrap_err();
    assert_eq!(panic_message(from_string.as_ref()), "formatted 7");
}
