//! Fuzz target `meetings_json`: AFL++ in persistent mode, feeding each input to
//! [`hearken::fuzzing::meetings_json`].

fn main() {
    afl::fuzz!(|data: &[u8]| hearken::fuzzing::meetings_json(data));
}
