//! Fuzz target `dtmf`: AFL++ in persistent mode, feeding each input to
//! [`hearken::fuzzing::dtmf`].

fn main() {
    afl::fuzz!(|data: &[u8]| hearken::fuzzing::dtmf(data));
}
