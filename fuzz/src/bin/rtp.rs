//! Fuzz target `rtp`: AFL++ in persistent mode, feeding each input to
//! [`hearken::fuzzing::rtp`].

fn main() {
    afl::fuzz!(|data: &[u8]| hearken::fuzzing::rtp(data));
}
