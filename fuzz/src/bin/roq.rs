//! Fuzz target `roq`: AFL++ in persistent mode, feeding each input to
//! [`hearken::fuzzing::roq`].

fn main() {
    afl::fuzz!(|data: &[u8]| hearken::fuzzing::roq(data));
}
