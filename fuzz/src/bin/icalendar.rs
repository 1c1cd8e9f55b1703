//! Fuzz target `icalendar`: AFL++ in persistent mode, feeding each input to
//! [`hearken::fuzzing::icalendar`].

fn main() {
    afl::fuzz!(|data: &[u8]| hearken::fuzzing::icalendar(data));
}
